package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestUpdateAgainstTheModuleProxy runs hephc update on a copy of the
// example system against the real module proxy and checksum database,
// from an empty cache (the toolchain fetched and checked): the pins
// heph.sum records are exactly what update resolves; age moves to v1.3.0
// with its deps, in a small diff that hephc check accepts; age v1.2.1
// needs a golang.org/x/crypto the example policy refuses, and check says
// so with both positions before anything is built.
func TestUpdateAgainstTheModuleProxy(t *testing.T) {
	e2e(t, "resolves the example system's programs against proxy.golang.org and sum.golang.org")
	dir := copyExampleSystem(t)
	cache, storeDir := t.TempDir(), t.TempDir()
	getenv := func(k string) string {
		if k == "HEPHC_CACHE" {
			return cache
		}
		return os.Getenv(k)
	}
	hephc := func(want int, args ...string) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: getenv, store: storeDir}
		start := time.Now()
		if code := run(e, args); code != want {
			t.Fatalf("hephc %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, stdout.String(), stderr.String())
		}
		t.Logf("hephc %s: %v", strings.Join(args, " "), time.Since(start).Round(10*time.Millisecond))
		return stdout.String(), stderr.String()
	}

	out, _ := hephc(0, "update", "filippo.io/age@v1.3.2", "github.com/u-root/u-root@v0.16.0")
	if out != "all pins are current\n" {
		t.Errorf("the pinned age and u-root are not what update resolves:\n%s", out)
	}

	before, _ := os.ReadFile(filepath.Join(dir, "system.cue"))
	out, _ = hephc(0, "update", "filippo.io/age@v1.3.0")
	want := "base.packages.age: filippo.io/age v1.3.2 → v1.3.0; deps: filippo.io/edwards25519 v1.2.0 → v1.1.0, golang.org/x/crypto v0.55.0 → v0.45.0, golang.org/x/sys v0.47.0 → v0.38.0, golang.org/x/term v0.45.0 → v0.37.0\n"
	if !strings.HasPrefix(out, want) {
		t.Errorf("update filippo.io/age@v1.3.0 printed\n%s\nwant it to start with\n%s", out, want)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "system.cue"))
	if lock, err := os.ReadFile(filepath.Join(dir, "heph.sum")); err != nil || !bytes.Contains(lock, []byte("\nfilippo.io/age v1.3.0 h1:")) {
		t.Errorf("heph.sum does not record age v1.3.0 (%v)", err)
	}
	if removed, added := lineChanges(string(before), string(after)); removed > 16 || added > 16 { // age, its 4 deps, its tests' 3 and their new entries
		t.Errorf("the pin change touched %d lines out and %d in, want a small diff:\n%s", removed, added, after)
	}
	for _, s := range []string{`version: "v1.3.0"`, "modules.x_crypto_v0_45_0, modules.x_sys_v0_38_0,", `edwards25519: {path: "filippo.io/edwards25519", version: "v1.1.0"`} {
		if !bytes.Contains(after, []byte(s)) {
			t.Errorf("system.cue has no %s", s)
		}
	}
	hephc(0, "check")
	out, errOut := hephc(1, "update", "--check")
	if !strings.Contains(out, "stale: base.packages.age: filippo.io/age v1.3.0 → v1.3.2") || !strings.Contains(errOut, "the pins are stale") {
		t.Errorf("update --check after a downgrade:\n%s%s", out, errOut)
	}

	hephc(0, "update", "filippo.io/age@v1.2.1")
	_, errOut = hephc(1, "check")
	if !strings.Contains(errOut, "golang.org/x/crypto v0.24.0 is older than the minimum v0.35.0") || !regexp.MustCompile(`policy.cue:[0-9]+:[0-9]+: rule versions.minimum."golang.org/x/crypto"`).MatchString(errOut) {
		t.Errorf("age v1.2.1 (golang.org/x/crypto v0.24.0) against the policy's minimum:\n%s", errOut)
	}
}

// lineChanges counts the lines of a not in b and of b not in a.
func lineChanges(a, b string) (removed, added int) {
	count := make(map[string]int)
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	for _, n := range count {
		if n > 0 {
			removed += n
		} else {
			added -= n
		}
	}
	return removed, added
}
