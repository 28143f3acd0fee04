package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/store"
)

// TestUpdateAndAddOnTheRealizedSystem is the user story on the
// realized example system (the shared store, systemStore), against the
// real module proxy and checksum database: hephc update moves age to
// v1.3.0 in a copy of system.cue, realize builds only age and what
// depends on it, and hephc diff says age v1.3.2 → v1.3.0; hephc add pins
// tomlv, which the workstation image then runs once as a service, and
// its output is seen on the booted image's console; age v1.2.1 needs a
// golang.org/x/crypto the example policy refuses, and realize and check
// say so with both positions before anything is built.
func TestUpdateAndAddOnTheRealizedSystem(t *testing.T) {
	t.Parallel() // one of the long e2e tests run two at a time (systemstore_test.go)
	storeDir, _, took := systemStore(t)
	requireQEMU(t)
	t.Logf("the shared store: system.cue realized from nothing in %v (once per test binary)", took.Round(time.Second))
	dir := copyExampleSystem(t)
	cache := t.TempDir() // the toolchain comes from the store
	getenv := func(k string) string {
		if k == "HEPHC_CACHE" {
			return cache
		}
		return os.Getenv(k)
	}
	// A profile of this test's own: its generations are the diff's, whatever
	// the other tests record in the shared store.
	const profile = "update-e2e"
	hephc := func(want int, args ...string) (stdout, stderr string) {
		t.Helper()
		var o, e bytes.Buffer
		start := time.Now()
		code := run(&env{stdout: &o, stderr: &e, cwd: dir, getenv: getenv, store: storeDir}, append([]string{"--store", storeDir}, args...))
		if code != want {
			t.Fatalf("hephc %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, o.String(), e.String())
		}
		t.Logf("hephc %s: %v", strings.Join(args, " "), time.Since(start).Round(10*time.Millisecond))
		return o.String(), e.String()
	}

	// The copy as it is: everything is in the store already.
	_, errOut := hephc(0, "realize", "--no-link", "--profile", profile, ".")
	if !strings.Contains(errOut, "nothing to do") {
		t.Errorf("realizing the unchanged copy did work:\n%s", errOut)
	}

	out, _ := hephc(0, "update", "filippo.io/age@v1.3.0")
	if !strings.HasPrefix(out, "base.packages.age: filippo.io/age v1.3.2 → v1.3.0; deps: ") {
		t.Errorf("update filippo.io/age@v1.3.0 printed\n%s", out)
	}
	// update moved the modules only age's tests read too (CCTV,
	// go-internal, x/tools): realize builds age and the workstation, and
	// runs age's tests, which the policy requires, offline with those
	// pins; the server image does not carry age.
	if !strings.Contains(out, "\nbase.packages.age.tests.go: deps: c2sp.org/CCTV/age ") {
		t.Errorf("update filippo.io/age@v1.3.0 did not move the modules age's tests read:\n%s", out)
	}
	_, errOut = hephc(0, "realize", "--no-link", "--profile", profile, ".")
	if !strings.Contains(errOut, "] built age in ") || !strings.Contains(errOut, "pass  base.packages.age.tests.go ") || strings.Contains(errOut, "server") {
		t.Errorf("realize after moving age did not build age and run its tests, or built the server:\n%s", errOut)
	}
	out, _ = hephc(0, "diff", "--profile", profile)
	for _, want := range []string{"\n  base.packages.age  v1.3.2 → v1.3.0  ", "\n  images.workstation  "} {
		if !strings.Contains(out, want) {
			t.Errorf("hephc diff lacks %q:\n%s", want, out)
		}
	}
	// Why age changed, where the version is written (its source's: age's
	// own version is a reference to it, the same edit).
	if m := regexp.MustCompile(`because base\.packages\.age\.inputs\.src\.version: v1\.3\.2 → v1\.3\.0  \(system\.cue:(\d+):(\d+)\)`).FindStringSubmatch(out); m == nil {
		t.Errorf("hephc diff does not say that age changed because of its version in system.cue:\n%s", out)
	} else if got := textAt(t, filepath.Join(dir, "system.cue"), m[1], m[2]); !strings.HasPrefix(got, `"v1.3.0"`) {
		t.Errorf("hephc diff places age's version at system.cue:%s:%s, which holds %q", m[1], m[2], got)
	}
	if strings.Contains(out, "images.server") {
		t.Errorf("hephc diff says the server image changed:\n%s", out)
	}

	// A real CLI not in system.cue, pinned by add, run once at boot: it
	// reads a TOML file of the image and prints each key's type.
	out, _ = hephc(0, "add", "github.com/BurntSushi/toml/cmd/tomlv@v1.5.0")
	if want := "tomlv: github.com/BurntSushi/toml v1.5.0 (github.com/BurntSushi/toml/cmd/tomlv), 0 deps, 0 new in modules\n"; out != want {
		t.Errorf("add printed\n%s\nwant\n%s", out, want)
	}
	editFile(t, filepath.Join(dir, "system.cue"), "bin:     base.packages\n", "bin:     {base.packages, \"tomlv\": tomlv}\n")
	service := `package system

images: workstation: initramfs: {
	files: "/etc/heph-e2e.toml": content: "heph_tomlv_e2e = 6.5\n"
	services: tomlv: {command: "/bin/tomlv", args: ["-types", "/etc/heph-e2e.toml"], restart: "never"}
}
`
	if err := os.WriteFile(filepath.Join(dir, "tomlv.cue"), []byte(service), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut = hephc(0, "realize", "--no-link", "--profile", profile, "-A", "images.workstation", ".")
	// toml, tomlv, the initramfs and toplevel (and the workstation's
	// image tests, which the policy requires, boot the new initramfs).
	if !strings.Contains(errOut, "] built tomlv in ") || strings.Contains(errOut, "server") {
		t.Errorf("realize of the workstation with tomlv did not build tomlv, or built the server:\n%s", errOut)
	}
	top := filepath.Join(storeDir, "store", strings.TrimPrefix(strings.TrimSpace(out), store.Dir+"/"))
	start := time.Now()
	code, console, errOut := hephcIn(t.TempDir(), "boot", "--timeout", "240s", "--expect", "heph: service tomlv exited with status 0", top)
	if code != 0 {
		t.Fatalf("booting the workstation with tomlv: exit %d after %v\n%s", code, time.Since(start).Round(time.Millisecond), errOut)
	}
	t.Logf("the workstation booted to tomlv's exit in %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(console, "heph_tomlv_e2e  Float") {
		t.Errorf("tomlv's output is not on the console:\n%s", console)
	}

	// An age whose golang.org/x/crypto the policy refuses: update writes
	// it, realize and check refuse it before anything is built.
	out, _ = hephc(0, "update", "filippo.io/age@v1.2.1")
	if !strings.Contains(out, "golang.org/x/crypto v0.45.0 → v0.24.0") {
		t.Errorf("update filippo.io/age@v1.2.1 printed\n%s", out)
	}
	before := storeEntries(t, storeDir)
	for _, cmd := range [][]string{{"realize", "--no-link", "--profile", profile, "."}, {"check", "."}} {
		out, errOut := hephc(1, cmd...)
		if out != "" || strings.Contains(errOut, "fetched") || strings.Contains(errOut, "built") {
			t.Errorf("hephc %s of the refused configuration did work:\n%s%s", cmd[0], out, errOut)
		}
		checkRefusal(t, dir, errOut)
	}
	if after := storeEntries(t, storeDir); !slices.Equal(after, before) {
		t.Errorf("the store held %d paths before the refused realize and %d after", len(before), len(after))
	}
}

// checkRefusal checks that stderr refuses golang.org/x/crypto v0.24.0 at
// its pin in system.cue and names the policy's rule at its place in
// policy.cue.
func checkRefusal(t *testing.T, dir, stderr string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^system\.cue:(\d+):(\d+): modules\.x_crypto_v0_24_0\.version: golang\.org/x/crypto v0\.24\.0 is older than the minimum v0\.35\.0\n\tpolicy\.cue:(\d+):(\d+): rule versions\.minimum\."golang\.org/x/crypto"\n`).FindStringSubmatch(stderr)
	if m == nil {
		t.Errorf("the refusal of golang.org/x/crypto v0.24.0 lacks a position in system.cue or policy.cue:\n%s", stderr)
		return
	}
	for _, at := range []struct{ file, line, col, want string }{
		{"system.cue", m[1], m[2], `"v0.24.0"`},
		{"policy.cue", m[3], m[4], `"v0.35.0"`},
	} {
		if got := textAt(t, filepath.Join(dir, at.file), at.line, at.col); !strings.HasPrefix(got, at.want) {
			t.Errorf("%s:%s:%s is at %q, want %s", at.file, at.line, at.col, got, at.want)
		}
	}
}

// textAt is the rest of the line at line:col (1-based, bytes) of file.
func textAt(t *testing.T, file, line, col string) string {
	t.Helper()
	l, _ := strconv.Atoi(line)
	c, _ := strconv.Atoi(col)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if n == l {
			if c < 1 || c > len(sc.Text()) {
				return ""
			}
			return sc.Text()[c-1:]
		}
	}
	return ""
}

// storeEntries lists the physical store's directory of paths, where
// whatever is fetched or built lands.
func storeEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// copyExampleSystem copies the repository's example system into a new
// directory and returns it: every file git tracks (system.cue, policy.cue,
// heph.sum, system/ and the Go sources hephcSrc pins, so that hephc
// update resolves hephc itself and the copy's pins hold), nothing
// untracked (binaries, result links).
func copyExampleSystem(t *testing.T) string {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", repo, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files in %s: %v", repo, err)
	}
	dir := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repo, f)
		fi, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// editFile replaces the one occurrence of old in file with new.
func editFile(t *testing.T, file, old, new string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte(old)); n != 1 {
		t.Fatalf("%s has %d occurrences of %q, want 1", file, n, old)
	}
	if err := os.WriteFile(file, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}
