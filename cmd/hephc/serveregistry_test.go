package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/server"
	"hephc.dev/hephc/trust"
)

// TestServeEmbeddedRegistry runs hephc serve with no registry named (the
// embedded one, at /v2/ on its own listener), publishes a signed path
// into it with a publisher's token, and substitutes the path into an
// empty store from it over the pinned connection. Then the hostile
// cases: anonymous pushes, a reader's and a reporter's, a deletion, a
// blob whose digest is not its content's, path traversal in the
// repository name; each refused, nothing written outside the registry's
// directory.
func TestServeEmbeddedRegistry(t *testing.T) {
	dir := t.TempDir()
	st := pathtest.NewStore(t)
	hephc := func(vars map[string]string, args ...string) string {
		t.Helper()
		var o, e bytes.Buffer
		getenv := func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			if k == TokenEnv || k == ServerCertificateEnv || k == ServerDataEnv || k == ServerClockEnv {
				return ""
			}
			return os.Getenv(k)
		}
		en := &env{stdout: &o, stderr: &e, cwd: dir, getenv: getenv, store: st.Dir}
		if code := run(en, append([]string{"--store", st.Dir}, args...)); code != 0 {
			t.Fatalf("hephc %s: exit %d\n%s", strings.Join(args, " "), code, e.String())
		}
		return o.String()
	}
	hephc(nil, "key", "generate", "--name", "alice", "--dir", dir)
	pub, _ := os.ReadFile(filepath.Join(dir, "alice.pub"))
	cfg := "package system\n\nimport \"hephc.dev/heph\"\n\nserver: heph.#Server & {listen: \"127.0.0.1:0\"}\n\n" +
		"policy: heph.#Policy & {trust: {\n\tpeople: alice: keys: [{key: \"" + strings.TrimSpace(string(pub)) + "\"}]\n\trules: [{signatures: 1}]\n}}\n"
	if err := os.WriteFile(filepath.Join(dir, "system.cue"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	out := hephc(nil, "serve", "init", "--data", data, "system.cue")
	cert := strings.Split(strings.Split(out, "\n")[1], "\"")[1]
	tokens := map[string]string{}
	for name, role := range map[string]string{"rob": "reader", "rita": "reporter", "pia": "publisher", "max": "maintainer"} {
		tokens[name] = strings.TrimSpace(hephc(nil, "serve", "token", "--data", data, "--role", role, name))
	}
	url := serve(t, dir, "", "--data", data, "system.cue")

	// Publish a signed path: pushed to the server's own /v2/.
	p := pathtest.Install(t, st, "hello", map[string]string{"bin/hello*": "#!/bin/sh\necho hello\n"})
	hephc(nil, "sign", "--only", "--key", filepath.Join(dir, "alice.key"), p.String())
	hephc(map[string]string{TokenEnv: tokens["pia"]}, "publish", "--server", url, "--certificate", cert, p.String())
	if _, err := os.Stat(filepath.Join(data, "registry", "docker", "registry", "v2", "repositories", "heph")); err != nil {
		t.Fatalf("the embedded registry holds no repository heph: %v", err)
	}

	// An empty store substitutes it from the embedded registry, anonymously.
	c := &server.Client{Base: url, HTTP: &http.Client{Transport: pinned(t, cert)}}
	h, err := c.Health(t.Context())
	if err != nil || h.Registry != server.EmbeddedRegistry {
		t.Fatalf("health: %+v, %v: want the embedded registry", h, err)
	}
	ref, rc, err := serverRegistry(c, h.Registry)
	if err != nil {
		t.Fatal(err)
	}
	empty := pathtest.NewStore(t)
	key, err := trust.ParsePublicKey(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	pol := &trust.Policy{Source: "test", People: []trust.Person{{Name: "alice", Keys: []trust.Key{{Public: key}}}}, Rules: []trust.Rule{{Builds: 1}}}
	if err := pol.Check(); err != nil {
		t.Fatal(err)
	}
	res, err := rc.Substitute(t.Context(), empty, []registry.Want{{Path: p}}, registry.SubstituteOptions{Caches: []registry.Ref{ref}, Policies: []*trust.Policy{pol}, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Substituted) != 1 || res.Substituted[0] != p {
		t.Fatalf("substituted %v (refused %v, missing %v, unreachable %v), want %s", res.Substituted, res.Refused, res.Missing, res.Unreachable, p)
	}

	// The hostile cases, straight at the OCI distribution API.
	hc := &http.Client{Transport: pinned(t, cert), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(token, method, path string, body []byte) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, url+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		who  string
		want int
	}{{"", http.StatusUnauthorized}, {"heph_not-a-token", http.StatusUnauthorized}, {tokens["rob"], http.StatusForbidden}, {tokens["rita"], http.StatusForbidden}} {
		if got := do(tc.who, http.MethodPost, "/v2/heph/blobs/uploads/", nil).StatusCode; got != tc.want {
			t.Errorf("a push with token %.9q…: %d, want %d", tc.who, got, tc.want)
		}
	}
	// A token as a password (docker login): the publisher's accepted, a
	// reader's refused.
	for _, tc := range []struct {
		token string
		want  int
	}{{tokens["pia"], http.StatusAccepted}, {tokens["rob"], http.StatusForbidden}} {
		req, _ := http.NewRequest(http.MethodPost, url+"/v2/heph/blobs/uploads/", nil)
		req.SetBasicAuth("anyone", tc.token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("a push with a token as a Basic password: %d, want %d", resp.StatusCode, tc.want)
		}
	}
	manifests := filepath.Join(data, "registry", "docker", "registry", "v2", "repositories", "heph", "_manifests", "revisions", "sha256")
	revs, _ := os.ReadDir(manifests)
	if len(revs) == 0 {
		t.Fatalf("no manifest in %s", manifests)
	}
	if got := do(tokens["pia"], http.MethodDelete, "/v2/heph/manifests/sha256:"+revs[0].Name(), nil).StatusCode; got != http.StatusMethodNotAllowed {
		t.Errorf("a publisher's deletion: %d, want 405", got)
	}
	for _, tok := range []string{"", "heph_not-a-token"} {
		if got := do(tok, http.MethodGet, "/v2/heph/manifests/sha256:"+revs[0].Name(), nil).StatusCode; got != http.StatusOK {
			t.Errorf("an open pull with token %q: %d, want 200", tok, got)
		}
	}

	// A blob whose digest is not its content's.
	resp := do(tokens["pia"], http.MethodPost, "/v2/heph/blobs/uploads/", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a publisher's upload: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	loc = strings.TrimPrefix(loc, url)
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	other := sha256.Sum256([]byte("other content"))
	if got := do(tokens["pia"], http.MethodPut, loc+sep+"digest=sha256:"+hex.EncodeToString(other[:]), []byte("content")).StatusCode; got != http.StatusBadRequest {
		t.Errorf("a blob under another digest: %d, want 400", got)
	}
	if _, err := os.Stat(filepath.Join(data, "registry", "docker", "registry", "v2", "blobs", "sha256", hex.EncodeToString(other[:2]), hex.EncodeToString(other[:]))); err == nil {
		t.Errorf("the blob under another digest was stored")
	}

	// Path traversal in the repository name.
	for _, path := range []string{"/v2/../../escape/blobs/uploads/", "/v2/heph/..%2F..%2F..%2Fescape/blobs/uploads/", "/v2/..%2fescape/blobs/uploads/", "/v2/heph/%2e%2e/%2e%2e/escape/blobs/uploads/"} {
		got := do(tokens["pia"], http.MethodPost, path, nil).StatusCode
		if got < 300 {
			t.Errorf("POST %s: %d, want it refused", path, got)
		}
		t.Logf("POST %s: %d", path, got)
	}
	repos, _ := os.ReadDir(filepath.Join(data, "registry", "docker", "registry", "v2", "repositories"))
	if len(repos) != 1 || repos[0].Name() != "heph" {
		t.Errorf("repositories after the traversals: %v, want heph only", repos)
	}
	for _, d := range []string{dir, data, filepath.Join(data, "registry")} {
		if _, err := os.Stat(filepath.Join(d, "escape")); err == nil {
			t.Errorf("%s/escape was made", d)
		}
	}

	// The refusals are in the audit log.
	var audit []server.AuditEntry
	ac := &server.Client{Base: url, Token: tokens["max"], HTTP: &http.Client{Transport: pinned(t, cert)}}
	if audit, err = ac.Audit(t.Context()); err != nil {
		t.Fatal(err)
	}
	var refused []string
	for _, a := range audit {
		if a.Action == "registry" && a.Outcome == "forbidden" {
			refused = append(refused, a.Who+": "+a.Detail)
		}
	}
	if !strings.Contains(strings.Join(refused, "\n"), "rita (reporter) may not push to the registry: that needs the publisher role") {
		t.Errorf("the audit log's registry refusals:\n%s", strings.Join(refused, "\n"))
	}
}

// pinned is a transport that accepts the certificate pin only.
func pinned(t *testing.T, pin string) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		if got := certFingerprint(cs.PeerCertificates[0].Raw); got != pin {
			t.Errorf("certificate %s, want %s", got, pin)
		}
		return nil
	}}
	return tr
}
