package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/imagetest"
)

// hephc test on the example system: the unit tests of age, wireguard,
// attest-tool, gocryptfs, the sentinel and hephinit pass in the sandbox,
// offline, with the pinned toolchain and modules; both images' tests
// boot them in QEMU and drive their consoles; a second run reruns
// nothing and says so. (realize ran them already, as the example policy
// requires them: then the first run finds them cached.) This is CI's one
// boot of each image: the other e2e tests read its results.
func TestTestSystem(t *testing.T) {
	storeDir, realized, _ := systemStore(t)
	requireQEMU(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: os.Getenv, store: storeDir}
	start := time.Now()
	if code := run(e, []string{"--store", storeDir, "test", "system.cue"}); code != 0 {
		t.Fatalf("hephc test system.cue: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("hephc test system.cue (first): %v\n%s%s", time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	if i := strings.Index(realized, "running "); i >= 0 {
		t.Logf("the realize of system.cue ran the tests the policy requires: %s", strings.SplitN(realized[i:], "\n", 2)[0])
	}
	var want []string
	for _, prog := range []string{"age", "wireguard", "attest_tool", "gocryptfs", "sentinel"} {
		want = append(want, "pass  base.packages."+prog+".tests.go  ")
	}
	want = append(want, "pass  images.workstation.tests.console  ", "pass  images.server.tests.boot  ")
	for _, w := range want {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("no %q line:\n%s", w, stdout.String())
		}
	}
	stdout.Reset()
	stderr.Reset()
	start = time.Now()
	if code := run(e, []string{"--store", storeDir, "test", "system.cue"}); code != 0 {
		t.Fatalf("second hephc test: exit %d\n%s", code, stderr.String())
	}
	t.Logf("hephc test system.cue (second): %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(stderr.String(), "passed before: nothing rerun") {
		t.Errorf("the second run reran tests:\n%s\n%s", stdout.String(), stderr.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if strings.HasPrefix(l, "off   urootTool.") || strings.HasPrefix(l, "off   hephc.") {
			continue
		}
		if !strings.HasPrefix(l, "pass  ") || !strings.Contains(l, "cached (passed ") {
			t.Errorf("second run: %q is not a cached pass", l)
		}
	}

	// -A images.workstation: that image's closure, its own test among
	// them, not the server's. The result names the host's QEMU, and
	// keeps the console's transcript.
	stdout.Reset()
	if code := run(e, []string{"--store", storeDir, "test", "--json", "-A", "images.workstation", "system.cue"}); code != 0 {
		t.Fatalf("hephc test -A images.workstation: exit %d\n%s", code, stderr.String())
	}
	var outs []testOutcome
	if err := json.Unmarshal(stdout.Bytes(), &outs); err != nil {
		t.Fatal(err)
	}
	var ws *testOutcome
	for i, o := range outs {
		if strings.HasPrefix(o.Test, "images.server.") {
			t.Errorf("-A images.workstation tested %s", o.Test)
		}
		if o.Test == "images.workstation.tests.console" {
			ws = &outs[i]
		}
	}
	if ws == nil || ws.Passed != 7 {
		t.Fatalf("-A images.workstation: the image's test %+v, want 7 steps passed\n%s", ws, stdout.String())
	}
	dir := filepath.Join(storeDir, "store", strings.TrimPrefix(ws.Path, "/heph/store/"))
	res, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res), `"qemu": "`+imagetest.QEMUVersion()+`"`) {
		t.Errorf("result.json does not name the host's QEMU (%s):\n%s", imagetest.QEMUVersion(), res)
	}
	if log, err := os.ReadFile(filepath.Join(dir, "log")); err != nil || !regexp.MustCompile(`AGE-SECRET-KEY-1`).Match(log) {
		t.Errorf("the transcript lacks age-keygen's key (%v)", err)
	}
}

// An image test whose line never comes fails hephc test (exit 1) after
// its step's timeout, with the step's position and the console's tail;
// the image's passing test is not run again.
func TestImageTestFails(t *testing.T) {
	shared, _, _ := systemStore(t)
	requireQEMU(t)
	// A store of its own, seeded with the shared one's paths and test
	// results: the failing result would stay with the server image, and
	// publishing that image from the shared store (TestServerSystem)
	// would then rightly be refused.
	storeDir := t.TempDir()
	if err := seedSharedStore(storeDir, shared); err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := systemWith(t, repo, "images: server: tests: never: steps: [\n\t{wait: \"^HEPH-SELFTEST OK$\", timeout: \"5m\"},\n\t{wait: \"HEPH-NEVER-PRINTED\", timeout: \"5s\"},\n]\n")
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: os.Getenv, store: storeDir}
	start := time.Now()
	code := run(e, []string{"--store", storeDir, "test", "-A", "images.server", "."})
	t.Logf("hephc test with a failing image test: exit %d in %v\n%s%s", code, time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, w := range []string{
		"fail  images.server.tests.never  ",
		"pass  images.server.tests.boot  cached",
	} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("stdout lacks %q", w)
		}
	}
	for _, w := range []string{
		`(images.server.tests.never at extra.cue:5:2) failed: step 2, wait "HEPH-NEVER-PRINTED": timed out after 5s: no such line`,
		"log lines:",
		"HEPH-SELFTEST OK",
		"full log: ",
	} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr lacks %q", w)
		}
	}
}

// systemWith is a copy of the example system (system.cue, without its
// policy, and system/) in a new directory, with extra.cue: package
// system, then extra (whose first line is extra.cue's line 3).
func systemWith(t *testing.T, repo, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "system"), os.DirFS(filepath.Join(repo, "system"))); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(repo, "system.cue")); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(filepath.Join(dir, "system.cue"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "extra.cue"), []byte("package system\n\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
