package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/trust"
)

// TestServeBadInput runs hephc serve (a process on 127.0.0.1, against
// go-containerregistry's registry in this process) and the client
// commands with bad input: no token, a token of the wrong role (403,
// said plainly), a publish whose test failed, a pinned certificate that
// is not the server's, a realize --server without a pinned root, with
// another root, and from a server whose timestamp expired (a server
// that stopped re-signing, or a frozen mirror).
func TestServeBadInput(t *testing.T) {
	st := pathtest.NewStore(t)
	f := newServeFixture(t, st.Dir)
	dir, cli := f.dir, f.cli
	hephc := func(vars map[string]string, args ...string) (int, string, string) {
		return cli.with(vars).run(st.Dir, args...)
	}
	must := func(vars map[string]string, args ...string) string {
		t.Helper()
		o, _ := cli.with(vars).must(st.Dir, args...)
		return o
	}
	refused := func(vars map[string]string, want string, args ...string) {
		t.Helper()
		cli.with(vars).refused(st.Dir, want, args...)
	}

	cfg := f.config("", "")
	if err := os.WriteFile(filepath.Join(dir, "system.cue"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// serve with bad input.
	refused(nil, "--role \"owner\": want one of reader, reporter, publisher, maintainer", "serve", "token", "--data", "data", "--role", "owner", "bob")
	refused(nil, "holds no server (hephc serve init makes one)", "serve", "token", "--data", "data", "--role", "reader", "bob")
	refused(nil, "want 1 ≤ --threshold (3) ≤ the number of root keys (2)", "serve", "init", "--data", "data", "--root-keys", "2", "--threshold", "3", "system.cue")

	out := must(nil, "serve", "init", "--data", "data", "system.cue")
	rootHash := strings.Split(strings.Split(out, "\n")[0], "\"")[1]
	cert := strings.Split(strings.Split(out, "\n")[1], "\"")[1]
	refused(nil, "holds a server already", "serve", "init", "--data", "data", "system.cue")
	tokens := map[string]string{}
	for name, role := range map[string]string{"rita": "reporter", "pia": "publisher"} {
		tokens[name] = strings.TrimSpace(must(nil, "serve", "token", "--data", "data", "--role", role, name))
	}
	url := serve(t, dir, "", "--data", filepath.Join(dir, "data"), "system.cue")
	client := []string{"--server", url, "--certificate", cert}

	// A path alice signed, whose test failed.
	p := pathtest.Install(t, st, "hello", map[string]string{"bin/hello*": "#!/bin/sh\necho hello\n"})
	must(nil, "sign", "--only", "--key", filepath.Join(dir, "alice.key"), p.String())

	// No token; the wrong role.
	refused(nil, "publishing needs a publisher's token: set HEPHC_TOKEN or give --token-file", append(append([]string{"publish"}, client...), p.String())...)
	refused(map[string]string{TokenEnv: tokens["rita"]}, "refused (403 forbidden): rita (reporter) may not publish: that needs the publisher role",
		append(append([]string{"publish"}, client...), p.String())...)
	refused(map[string]string{TokenEnv: tokens["rita"]}, "refused (403 forbidden): rita (reporter) may not roll back",
		append(append([]string{"channels", "rollback"}, client...), "stable")...)
	refused(nil, "refused (403 forbidden): an anonymous request may not open an issue: that needs the reporter role (no token given: set HEPHC_TOKEN or --token-file)",
		append(append([]string{"issue", "open"}, client...), "hello", "1", "it crashes")...)
	// Not the pinned certificate.
	other := "sha256:" + strings.Repeat("0", 64)
	refused(nil, "not the one pinned ("+other+"): refused", "channels", "--server", url, "--certificate", other)

	// A publish whose test failed is refused, nothing published.
	key, err := trust.ReadSecretKeyFile(filepath.Join(dir, "alice.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := st.QueryPathInfo(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	testPath := pathtest.Install(t, st, "hello-test", map[string]string{"result": "FAIL\n"})
	envelope, err := trust.SignTestResult(&trust.TestRun{
		Test:       trust.TestSubject{Path: testPath.String(), Derivation: strings.Repeat("a", 52)},
		Tested:     []trust.TestSubject{{Path: p.String(), ContentHash: info.ContentHash.String(), Derivation: strings.Repeat("b", 52)}},
		Derivation: strings.Repeat("a", 52),
		Result:     trust.TestFailed, Failed: []string{"TestHello"},
		Runner: BuilderID, Time: time.Now().UTC().Truncate(time.Second),
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := testResults(st).Add(p.Base(), envelope); err != nil {
		t.Fatal(err)
	}
	pia := map[string]string{TokenEnv: tokens["pia"]}
	refused(pia, "refused, nothing published: its tests did not pass:\n  "+testPath.String()+" failed", append(append([]string{"publish"}, client...), p.String())...)
	if o := must(nil, append([]string{"channels"}, client...)...); !strings.Contains(o, "testing (version 1): empty") {
		t.Errorf("channels after a refused publish:\n%s", o)
	}

	// realize --server: no pinned root; another root; then a server whose
	// timestamp expired.
	refused(nil, "system.cue:5:1: server: rootHash is not set", append([]string{"realize", "--no-link"}, append(client, "system.cue")...)...)
	refused(nil, "its channel metadata is refused, nothing installed", append([]string{"realize", "--no-link", "--root-hash", other}, append(client, "system.cue")...)...)
	must(nil, append([]string{"realize", "--no-link", "--root-hash", rootHash}, append(client, "system.cue")...)...)
	stopServer(t)
	stale := filepath.Join(dir, "stale")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "system.cue"), []byte(cfg), 0o644)
	staleEnv := map[string]string{ServerClockEnv: "-48h"}
	out = must(staleEnv, "serve", "init", "--data", filepath.Join(stale, "data"), "--offline-dir", filepath.Join(stale, "keys"), "stale/system.cue")
	staleRoot := strings.Split(strings.Split(out, "\n")[0], "\"")[1]
	staleCert := strings.Split(strings.Split(out, "\n")[1], "\"")[1]
	url = serve(t, stale, "-48h", "--data", filepath.Join(stale, "data"), "system.cue")
	refused(nil, "timestamp", "realize", "--no-link", "--server", url, "--certificate", staleCert, "--root-hash", staleRoot, "stale/system.cue")
	code, _, e := hephc(nil, "realize", "--no-link", "--server", url, "--certificate", staleCert, "--root-hash", staleRoot, "stale/system.cue")
	t.Logf("a stale server: exit %d: %s", code, lastLine(e))
}
