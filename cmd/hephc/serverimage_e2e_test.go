package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/localsrc"
	"hephc.dev/hephc/server"
)

// TestServerImage boots the package server's own image in QEMU (hephc
// built in the store from this repository, hephc serve as a service, its
// port forwarded to the host's 127.0.0.1), reads the pins its first start
// prints on the console, publishes a package to it from the host with the
// admin token handed over at boot, boots the workstation with the
// reporter token given at boot and the server at 10.0.2.2 (QEMU's address
// for the host), plants a file in the workstation's /bin through its
// console shell, and finds the sentinel's alert on the server's page.
func TestServerImage(t *testing.T) {
	t.Parallel() // one of the long e2e tests run two at a time (systemstore_test.go)
	storeDir, _, _ := systemStore(t)
	requireQEMU(t)
	work := t.TempDir()
	port := freePort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)

	cli := &inProcess{t: t, cwd: work, env: map[string]string{}}
	cli.must(storeDir, "key", "generate", "--name", "alice", "--dir", work)
	pub, err := os.ReadFile(filepath.Join(work, "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	dir, files := serverImageConfig(t, port, strings.TrimSpace(string(pub)))
	cli.cwd = dir
	start := time.Now()
	_, rerr := cli.must(storeDir, append([]string{"realize", "--no-link", "-A", "images.server"}, files...)...)
	t.Logf("realize images.server: %s (%v)", lastLine(rerr), time.Since(start).Round(time.Second))
	serverTop := toplevelIn(t, storeDir, dir, files, "images.server")
	sentinel := toplevelIn(t, storeDir, dir, files, "base.packages.sentinel")
	workstation := imageToplevel(t, storeDir, "images.workstation")

	admin, reporter := bootToken(t), bootToken(t)
	tokFile, adminFile := filepath.Join(work, "reporter.token"), filepath.Join(work, "admin.token")
	if err := os.WriteFile(tokFile, []byte(reporter+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(adminFile, []byte(admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The server: its first start prints its pins, then serves.
	bootStart := time.Now()
	srv := bootOnTerminal(t, serverTop, "--memory", "1024", "--reporter-token-file", tokFile, "--admin-token-file", adminFile,
		"--forward", fmt.Sprintf("tcp:127.0.0.1:%d-:8080", port))
	pinRE := `rootHash:\s+"(sha256:[0-9a-f]{64})"\s+certificate:\s+"(sha256:[0-9a-f]{64})"`
	srv.expect(t, pinRE, 5*time.Minute)
	pins := regexp.MustCompile(pinRE).FindStringSubmatch(srv.plain())
	rootHash, cert := pins[1], pins[2]
	srv.expect(t, regexp.QuoteMeta("token boot-admin (maintainer) adopted"), 2*time.Minute)
	srv.expect(t, `serving https://`, 2*time.Minute)
	hc := pinnedClient(cert)
	admc := &server.Client{Base: url, Token: admin, HTTP: hc}
	waitHealthy(t, admc)
	t.Logf("server image: serving %v after boot (root %s, certificate %s)", time.Since(bootStart).Round(time.Second), rootHash, cert)

	// Publish the sentinel from the host, as alice, with the admin token,
	// to the server the console's certificate pin names.
	cli.must(storeDir, "sign", "--only", "--key", filepath.Join(work, "alice.key"), sentinel)
	cli.env[TokenEnv] = admin
	_, perr := cli.must(storeDir, "publish", "--server", url, "--certificate", cert, "--attr", "sentinel", "--version", "1", sentinel)
	t.Logf("publish: %s", lastLine(perr))
	chans, err := admc.Channels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprintf("%+v", chans), "sentinel") {
		t.Fatalf("testing does not hold the sentinel: %+v", chans)
	}

	// The workstation reports to it at 10.0.2.2, the host's 127.0.0.1.
	ws := bootOnTerminal(t, workstation, "--reporter-token-file", tokFile,
		"--append", fmt.Sprintf("ip=dhcp heph.server=https://10.0.2.2:%d heph.server_cert=%s", port, cert))
	// Planted once the sentinel watches (the shell may come first).
	ws.expect(t, `HEPH-SENTINEL: watching [0-9]+ files in /bin`, 4*time.Minute)
	ws.send(t, "echo planted >/bin/planted\r")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		th, err := admc.Threats(context.Background())
		if err == nil && slices.ContainsFunc(th.Recent, func(r server.Threat) bool {
			return r.Node == "workstation" && r.Alert == "added /bin/planted" && r.ReportedBy == "boot-reporter"
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert from the workstation on the server: %+v, %v\nworkstation console:\n%s", th, err, ws.plain())
		}
		time.Sleep(2 * time.Second)
	}
	req, _ := http.NewRequest("GET", url+"/", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "<code>added /bin/planted</code>") {
		t.Fatalf("the page does not show the alert:\n%s", page)
	}
	for _, con := range []*terminal{srv, ws} {
		if text := con.plain(); strings.Contains(text, admin) || strings.Contains(text, reporter) {
			t.Fatalf("a console showed a token:\n%s", text)
		}
	}
	t.Logf("the alert on the server's page %v after the server's boot", time.Since(bootStart).Round(time.Second))
	ws.quit(t)
	srv.quit(t)
}

// serverImageConfig copies the example system with what hephcSrc takes of
// the repository beside it, into a new directory: its server at
// https://10.0.2.2:port (where the workstation reaches the host), the
// embedded registry, and a trust policy in the server's image that counts
// alice (pub). It returns the directory and the files to load.
func serverImageConfig(t *testing.T, port int, pub string) (string, []string) {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(repo, hephcPinsFile))
	if err != nil {
		t.Fatal(err)
	}
	filter, err := hephcSrcFilter(conf)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "config")
	if _, err := localsrc.Copy(repo, ".", filter, dir, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"system.cue", "policy.cue", "heph.sum"} {
		b, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.CopyFS(filepath.Join(dir, "system"), os.DirFS(filepath.Join(repo, "system"))); err != nil {
		t.Fatal(err)
	}
	files := []string{"system.cue", "e2e.cue"}
	// The copy's pins: those of the repository when they are current (as
	// TestHephcSourcePinIsCurrent checks), so the shared store's hephc.
	pinned := filepath.Join(dir, filepath.Base(hephcPinsFile))
	pinnedConf, err := os.ReadFile(pinned)
	if err != nil {
		t.Fatal(err)
	}
	pins, err := hephcPins(t, dir, pinnedConf)
	if err != nil {
		t.Fatal(err)
	}
	if pinnedConf, err = withPins(pinnedConf, pins); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pinned, pinnedConf, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(dir, "heph.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "heph.sum"), withLocks(sum, pins), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := filepath.Join(dir, "system.cue")
	b, err := os.ReadFile(sys)
	if err != nil {
		t.Fatal(err)
	}
	urlRE := regexp.MustCompile(`(?m)^(\turl:\s+)"https://[^"]+"$`)
	if n := len(urlRE.FindAll(b, -1)); n != 1 {
		t.Fatalf("system.cue has %d server url: lines, want 1", n)
	}
	b = urlRE.ReplaceAll(b, []byte(fmt.Sprintf(`${1}"https://10.0.2.2:%d"`, port)))
	// The embedded registry, at the server's own address.
	b = regexp.MustCompile(`(?m)^\tregistry:\s+"oci://[^"]+"\n`).ReplaceAll(b, nil)
	if err := os.WriteFile(sys, b, 0o644); err != nil {
		t.Fatal(err)
	}
	trustPolicy := "package system\n\nimport \"hephc.dev/heph\"\n\npolicy: heph.#Policy & {trust: {\n\tpeople: alice: keys: [{key: \"" + pub + "\"}]\n\trules: [{signatures: 1}]\n}}\n"
	e2e := fmt.Sprintf("package system\n\nimages: server: initramfs: files: \"/etc/heph/server/policy.cue\": content: %q\n", trustPolicy)
	if err := os.WriteFile(filepath.Join(dir, "e2e.cue"), []byte(e2e), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// toplevelIn returns the physical path in the store dir of attr of the
// configuration files in dir.
func toplevelIn(t *testing.T, storeDir, dir string, files []string, attr string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: os.Getenv, store: storeDir}
	g, _, err := evaluate(e, evaluation{args: files, policy: true, useCache: true})
	if err != nil {
		t.Fatal(err)
	}
	h, ok := g.Roots[attr]
	if !ok {
		t.Fatalf("%s has no root %s", dir, attr)
	}
	return filepath.Join(storeDir, "store", g.Nodes[h].Path().Base())
}

// bootToken is a new token to hand over at boot.
func bootToken(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "heph_" + base64.RawURLEncoding.EncodeToString(b)
}

// pinnedClient is an HTTPS client that accepts the certificate pin only.
func pinnedClient(pin string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the pin is checked instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if got := certFingerprint(cs.PeerCertificates[0].Raw); got != pin {
				return fmt.Errorf("certificate %s, want %s", got, pin)
			}
			return nil
		},
	}}}
}

// freePort is a TCP port free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitHealthy waits until the server answers GET /health through the
// forwarded port.
func waitHealthy(t *testing.T, c *server.Client) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := c.Health(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's image does not answer on %s: %v", c.Base, err)
		}
		time.Sleep(time.Second)
	}
}
