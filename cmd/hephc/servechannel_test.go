package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// TestChannelFromMeta: a derivation's meta.channel is the channel it is
// installed from. Two files are published into testing (hephc serve on
// 127.0.0.1, go-containerregistry's registry in this process); realize
// --server --channel testing into an empty store installs the one whose
// derivation names no channel, and refuses the one that says
// meta.channel: "stable", naming it and both channels.
func TestChannelFromMeta(t *testing.T) {
	storeA, storeB := pathtest.NewStore(t).Dir, pathtest.NewStore(t).Dir
	f := newServeFixture(t, storeA)
	dir, cli := f.dir, f.cli
	hashes := map[string]string{}
	for _, f := range []string{"hello.txt", "greet.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tree, err := fstree.HashTree(filepath.Join(dir, f), fstree.HashOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hashes[f] = tree.Hash.String()
	}
	f.write("system.cue", "", "\n"+
		"hello: heph.#LocalFile & {file: \"hello.txt\", hash: \""+hashes["hello.txt"]+"\", meta: channel: \"testing\"}\n"+
		"greet: heph.#LocalFile & {file: \"greet.txt\", hash: \""+hashes["greet.txt"]+"\", meta: channel: \"stable\"}\n")

	// Store A makes both, alice signs them, pia publishes them.
	cli.must(storeA, "realize", "--no-link", "system.cue")
	e := &env{stdout: io.Discard, stderr: io.Discard, cwd: dir, getenv: cli.getenv, store: storeA}
	g, _, err := evaluate(e, evaluation{args: []string{"system.cue"}})
	if err != nil {
		t.Fatal(err)
	}
	sg := pipeline.StoreGraph(g)
	paths := map[string]string{}
	for _, attr := range []string{"hello", "greet"} {
		paths[attr] = sg.PathOf(g.Roots[attr]).String()
	}
	cli.must(storeA, "sign", "--only", "--key", filepath.Join(dir, "alice.key"), paths["hello"], paths["greet"])
	out, _ := cli.must(storeA, "serve", "init", "--data", "data", "system.cue")
	rootHash := strings.Split(strings.Split(out, "\n")[0], "\"")[1]
	cert := strings.Split(strings.Split(out, "\n")[1], "\"")[1]
	token, _ := cli.must(storeA, "serve", "token", "--data", "data", "--role", "publisher", "pia")
	url := serve(t, dir, "", "--data", filepath.Join(dir, "data"), "system.cue")
	client := []string{"--server", url, "--certificate", cert}
	// Every test result goes with the publish: alice's signed one of
	// greet and an unsigned one of hello (shown by the server, not
	// counted).
	key, err := trust.ReadSecretKeyFile(filepath.Join(dir, "alice.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(storeA)
	if err != nil {
		t.Fatal(err)
	}
	for attr, k := range map[string]*trust.SecretKey{"hello": nil, "greet": key} {
		p, _ := store.ParsePath(paths[attr])
		info, _, err := st.QueryPathInfo(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		test := pathtest.Install(t, st, attr+"-test", map[string]string{"result": "PASS\n"})
		env, err := trust.SignTestResult(&trust.TestRun{
			Test:       trust.TestSubject{Path: test.String(), Derivation: strings.Repeat(attr[:1], 52)},
			Tested:     []trust.TestSubject{{Path: p.String(), ContentHash: info.ContentHash.String(), Derivation: p.Hash.String()}},
			Derivation: strings.Repeat(attr[:1], 52),
			Result:     trust.TestPassed, Passed: []string{"TestIt"},
			Runner: BuilderID, Time: time.Now().UTC().Truncate(time.Second),
		}, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := testResults(st).Add(p.Base(), env); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	_, pubOut := cli.with(map[string]string{TokenEnv: strings.TrimSpace(token)}).must(storeA, append(append([]string{"publish"}, client...), "system.cue")...)
	if !strings.Contains(pubOut, "2 test results (1 unsigned)") {
		t.Errorf("publish did not send both test results:\n%s", pubOut)
	}

	// hello says meta.channel: "testing": installed from testing, but
	// not with --channel stable; greet says "stable": refused, it is in
	// testing.
	realize := append(append([]string{"realize", "--no-link", "--root-hash", rootHash}, client...), "--attr")
	cli.refused(storeB, `hello.txt (hello, system.cue:15:1) says meta.channel: "testing", not --channel stable: not installed`, append(realize, "hello", "--channel", "stable", "system.cue")...)
	_, errOut := cli.must(storeB, append(realize, "hello", "system.cue")...)
	if !strings.Contains(errOut, "substituted 1 of 1 paths") {
		t.Fatalf("realize --channel testing of hello:\n%s", errOut)
	}
	errOut = cli.refused(storeB, "--substitute-only: 1 paths not substituted (1 not admitted", append(realize, "greet", "system.cue")...)
	want := paths["greet"] + " (greet, system.cue:"
	for _, w := range []string{want, `is installed from channel stable only (its meta.channel), and stable (version 1) does not hold it; it is in testing (version 2)`} {
		if !strings.Contains(errOut, w) {
			t.Errorf("realize --channel testing of greet does not say %q:\n%s", w, errOut)
		}
	}
	t.Logf("refused: %s", strings.TrimSpace(errOut))
}
