package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// e2e reports whether end-to-end tests must run (CI sets HEPHC_E2E=1).
func e2e(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("HEPHC_E2E") != "1" {
		t.Skipf("set HEPHC_E2E=1 to run: %s", why)
	}
}

// TestRealizeBaseGroup realizes the example system's base group from
// nothing: the pinned toolchain and modules are fetched from the module
// proxy and checked against their h1: sums, and the programs are built
// offline in the sandbox. A second run does nothing.
func TestRealizeBaseGroup(t *testing.T) {
	e2e(t, "fetches the pinned Go toolchain and modules (about 300 MB) and builds the base group")
	storeDir := t.TempDir()
	cwd, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: cwd, getenv: os.Getenv, store: storeDir}
	if code := run(e, []string{"--store", storeDir, "realize", "--no-link", "-A", "base", "system.cue"}); code != 0 {
		t.Fatalf("hephc realize -A base: exit %d\n%s", code, stderr.String())
	}
	paths := strings.Fields(stdout.String())
	if len(paths) != 3 {
		t.Fatalf("got %d output paths, want 3 (age, wireguard, attest-tool):\n%s", len(paths), stdout.String())
	}
	var keygen string
	for _, p := range paths {
		bins, _ := filepath.Glob(filepath.Join(storeDir, "store", strings.TrimPrefix(p, "/heph/store/"), "bin", "*"))
		if len(bins) == 0 {
			t.Errorf("%s has no programs in bin/", p)
		}
		for _, b := range bins {
			if filepath.Base(b) == "age-keygen" {
				keygen = b
			}
		}
	}
	if keygen == "" {
		t.Fatal("no age-keygen among the outputs")
	}
	out, err := exec.Command(keygen).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "AGE-SECRET-KEY-") {
		t.Errorf("the built age-keygen: %v\n%s", err, out)
	}

	stdout.Reset()
	stderr.Reset()
	if code := run(e, []string{"--store", storeDir, "realize", "--no-link", "-A", "base", "system.cue"}); code != 0 {
		t.Fatalf("second realize: exit %d\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "nothing to do") {
		t.Errorf("second realize did something:\n%s", stderr.String())
	}
}
