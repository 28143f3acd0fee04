package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"hephc.dev/hephc/pipeline"
)

// TestServerSystem is the package server end to end, on 127.0.0.1:
// hephc serve init and hephc serve (with its embedded registry),
// everything system.cue needs published from the shared
// store into testing, a promotion refused on day 0 and one by hand
// refused for a publisher (403), the server restarted with its clock 8
// days on (HEPHC_TEST_SERVER_CLOCK) promoting it to stable, and an empty
// store realizing the system from stable, building nothing. Then the
// server's state is restored from a backup taken before the promotion:
// its channel metadata is at lower versions, and realize --server
// refuses it.
func TestServerSystem(t *testing.T) {
	t.Parallel() // one of the long e2e tests run two at a time (systemstore_test.go)
	storeA, _, _ := systemStore(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	data := filepath.Join(work, "data")
	cli := &inProcess{t: t, cwd: repo, env: map[string]string{}}
	extraEnv := cli.env
	hephc, must := cli.run, cli.must
	start := time.Now()

	// alice signs every path system.cue needs; the trust policy asks her
	// signature (a publish's rule and stable's quorum).
	must(storeA, "key", "generate", "--name", "alice", "--dir", work)
	pub, err := os.ReadFile(filepath.Join(work, "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	trustFile := filepath.Join(work, "trust.cue")
	os.WriteFile(trustFile, []byte("package system\n\nimport \"hephc.dev/heph\"\n\npolicy: heph.#Policy & {trust: {\n\tpeople: alice: keys: [{key: \""+
		strings.TrimSpace(string(pub))+"\"}]\n\trules: [{signatures: 1}]\n}}\n"), 0o644)
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, cwd: repo, getenv: os.Getenv, store: storeA}
	g, _, err := evaluate(e, evaluation{args: []string{"system.cue"}, policy: true, useCache: true})
	if err != nil {
		t.Fatal(err)
	}
	sg := pipeline.StoreGraph(g)
	order, err := sg.Closure(pipeline.RootHashes(g)...)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, h := range order {
		all = append(all, sg.PathOf(h).String())
	}
	must(storeA, append([]string{"sign", "--only", "--key", filepath.Join(work, "alice.key")}, all...)...)

	// serve init: two of three root keys, written for the admins.
	out, _ := must(storeA, "serve", "init", "--data", data, "--root-keys", "3", "--threshold", "2", "--offline-dir", filepath.Join(work, "offline"), "system.cue")
	pins := regexp.MustCompile(`rootHash:\s+"(sha256:[0-9a-f]{64})"\ncertificate:\s+"(sha256:[0-9a-f]{64})"`).FindStringSubmatch(out)
	if pins == nil {
		t.Fatalf("serve init printed %q", out)
	}
	rootHash, cert := pins[1], pins[2]
	for _, f := range []string{"root-1.key", "root-2.key", "root-3.key"} {
		if _, err := os.Stat(filepath.Join(work, "offline", f)); err != nil {
			t.Error(err)
		}
	}
	tokens := map[string]string{}
	for name, role := range map[string]string{"pia": "publisher", "max": "maintainer"} {
		o, _ := must(storeA, "serve", "token", "--data", data, "--role", role, name)
		tokens[name] = strings.TrimSpace(o)
	}

	// The packages go to the server's embedded registry (system.cue
	// names none).
	serveArgs := []string{"--data", data, "--policy", trustFile, "system.cue"}
	url := serve(t, repo, "", serveArgs...)
	client := []string{"--server", url, "--certificate", cert}

	// Publish: everything system.cue needs, into testing.
	extraEnv[TokenEnv] = tokens["pia"]
	pubStart := time.Now()
	_, pubErr := must(storeA, append(append([]string{"publish"}, client...), "system.cue")...)
	pubTook := time.Since(pubStart)
	t.Logf("publish: %s (%v)", lastLine(pubErr), pubTook.Round(100*time.Millisecond))
	if !regexp.MustCompile(`^published system \S+ into testing: \d+ paths`).MatchString(lastLine(pubErr)) {
		t.Fatalf("publish: %s", pubErr)
	}
	chOut, _ := must(storeA, append([]string{"channels"}, client...)...)
	if !strings.Contains(chOut, "waiting: system ") || !strings.Contains(chOut, "in testing 0 days of 7") || !strings.Contains(chOut, "stable (version 1): empty") {
		t.Fatalf("channels after the publish:\n%s", chOut)
	}
	// A publisher may not promote: 403, said plainly.
	code, _, promErr := hephc(storeA, append(append([]string{"promote"}, client...), "--all")...)
	if code != 1 || !strings.Contains(promErr, "refused (403 forbidden): pia (publisher) may not promote: that needs the maintainer role") {
		t.Fatalf("promote as a publisher: exit %d\n%s", code, promErr)
	}
	// A maintainer may, where the rules allow: not on day 0.
	extraEnv[TokenEnv] = tokens["max"]
	code, _, promErr = hephc(storeA, append(append([]string{"promote"}, client...), "--all")...)
	if code != 1 || !strings.Contains(promErr, "in testing 0 days of 7") {
		t.Fatalf("promote on day 0: exit %d\n%s", code, promErr)
	}
	backup := filepath.Join(work, "before-promotion.sqlite")
	must(storeA, "serve", "backup", "--data", data, backup)

	// Eight days on, the server promotes it (its first tick).
	stopServer(t)
	url = serve(t, repo, "192h", serveArgs...)
	client = []string{"--server", url, "--certificate", cert}
	chOut, _ = must(storeA, append([]string{"channels"}, client...)...)
	if !regexp.MustCompile(`(?m)^stable \(version \d+\)\n  system \S+: \d+ paths`).MatchString(chOut) || !regexp.MustCompile(`testing \(version \d+\): empty`).MatchString(chOut) {
		t.Fatalf("channels eight days on:\n%s", chOut)
	}

	// An empty store realizes the system from stable, building nothing.
	storeB := filepath.Join(work, "b")
	realizeArgs := append(append([]string{"realize", "--no-link", "--policy", trustFile}, client...), "--root-hash", rootHash, "--channel", "stable", "system.cue")
	subStart := time.Now()
	_, subErr := must(storeB, realizeArgs...)
	subTook := time.Since(subStart)
	if !strings.Contains(subErr, "verified "+url+"'s channels (root "+rootHash+")") || !strings.Contains(subErr, "nothing to do") ||
		strings.Contains(subErr, "\nbuilding ") || strings.Contains(subErr, "not substituted") {
		t.Fatalf("realize --server into an empty store:\n%s", subErr)
	}
	substLine := regexp.MustCompile(`(?m)^substituted \d+ of \d+ paths .*$`).FindString(subErr)
	t.Logf("realize --server: %s (%v)", substLine, subTook.Round(100*time.Millisecond))

	// The state from before the promotion: lower versions, refused.
	stopServer(t)
	for _, f := range []string{"server.sqlite-wal", "server.sqlite-shm"} {
		os.Remove(filepath.Join(data, f))
	}
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "server.sqlite"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	url = serve(t, repo, "", serveArgs...)
	client = []string{"--server", url, "--certificate", cert}
	realizeArgs = append(append([]string{"realize", "--no-link", "--policy", trustFile}, client...), "--root-hash", rootHash, "system.cue")
	code, _, rbErr := hephc(storeB, realizeArgs...)
	if code != 1 || !strings.Contains(rbErr, "its channel metadata is refused, nothing installed") || !strings.Contains(rbErr, "lower") {
		t.Fatalf("realize --server from a server rolled back: exit %d\n%s", code, rbErr)
	}
	t.Logf("a rolled-back server: %s", lastLine(rbErr))
	stopServer(t)
	t.Logf("figures: publish %v, realize from stable into an empty store %v, the whole test %v", pubTook.Round(100*time.Millisecond), subTook.Round(100*time.Millisecond), time.Since(start).Round(time.Second))
}

// server is the hephc serve process a test runs.
var server_ struct {
	cmd  *exec.Cmd
	done chan error
}

// serve starts hephc serve ARGS in dir on a free port of 127.0.0.1, its
// clock moved by clock ("" for none), and returns its URL once it serves.
func serve(t *testing.T, dir, clock string, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: self, Args: append([]string{"hephc", "serve", "--listen", addr}, args...), Dir: dir}
	cmd.Env = append(os.Environ(), ServerClockEnv+"="+clock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	server_.cmd, server_.done = cmd, make(chan error, 1)
	t.Cleanup(func() { stopServer(t) })
	ready := make(chan string, 1)
	var log bytes.Buffer
	go func() {
		r := bufio.NewReader(stderr)
		for {
			line, err := r.ReadString('\n')
			log.WriteString(line)
			if strings.HasPrefix(line, "serving https://") {
				ready <- line
			}
			if err != nil {
				io.Copy(io.Discard, r)
				server_.done <- cmd.Wait()
				return
			}
		}
	}()
	select {
	case line := <-ready:
		t.Logf("hephc serve: %s", strings.TrimSpace(line))
	case err := <-server_.done:
		t.Fatalf("hephc serve exited: %v\n%s", err, log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("hephc serve did not start in 60s\n%s", log.String())
	}
	return "https://" + addr
}

// stopServer stops the running hephc serve (SIGTERM), if one runs.
func stopServer(t *testing.T) {
	if server_.cmd == nil {
		return
	}
	cmd := server_.cmd
	server_.cmd = nil
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-server_.done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Errorf("hephc serve did not stop on SIGTERM in 20s")
	}
}
