package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hephc test on the example system's base group: the unit tests of age,
// wireguard, attest-tool, gocryptfs and the sentinel pass in the sandbox,
// offline, with the pinned toolchain and modules; a second run reruns
// nothing and says so. (realize ran them already when the example policy
// requires them: then the first run finds them cached.)
func TestTestSystemBase(t *testing.T) {
	storeDir, realized, _ := systemStore(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: os.Getenv, store: storeDir}
	start := time.Now()
	if code := run(e, []string{"--store", storeDir, "test", "-A", "base", "system.cue"}); code != 0 {
		t.Fatalf("hephc test -A base system.cue: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("hephc test -A base system.cue (first): %v\n%s%s", time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	if i := strings.Index(realized, "running "); i >= 0 {
		t.Logf("the realize of system.cue ran the tests the policy requires: %s", strings.SplitN(realized[i:], "\n", 2)[0])
	}
	for _, prog := range []string{"age", "wireguard", "attest_tool", "gocryptfs", "sentinel"} {
		want := "pass  base.packages." + prog + ".tests.go  "
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("no %q line:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	stderr.Reset()
	start = time.Now()
	if code := run(e, []string{"--store", storeDir, "test", "-A", "base", "system.cue"}); code != 0 {
		t.Fatalf("second hephc test: exit %d\n%s", code, stderr.String())
	}
	t.Logf("hephc test -A base system.cue (second): %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(stderr.String(), "passed before: nothing rerun") {
		t.Errorf("the second run reran tests:\n%s\n%s", stdout.String(), stderr.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if !strings.HasPrefix(l, "pass  ") || !strings.Contains(l, "cached (passed ") {
			t.Errorf("second run: %q is not a cached pass", l)
		}
	}
}
