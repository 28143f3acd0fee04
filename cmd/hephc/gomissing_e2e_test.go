package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGoBuildMissingModuleSaysWhichAndHow builds, with the shared store's
// pinned sources (systemStore), age from the example system without
// golang.org/x/sys among its deps, in a copy of the configuration without
// its LockFile (with it, evaluation already refuses deps changed by
// hand). The go command can only say "module lookup disabled by
// GOPROXY=off"; the build's log and realize's error end with the
// program, the module and version its inputs lack, and the hephc update
// command that pins it.
func TestGoBuildMissingModuleSaysWhichAndHow(t *testing.T) {
	storeDir, _, _ := systemStore(t)
	dir := copyExampleSystem(t)
	for _, f := range []string{"heph.sum", "policy.cue"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	nosys := `package system

import "hephc.dev/heph"

// age without golang.org/x/sys among its deps.
ageNoSys: heph.#GoProgram & {
	name:     "age-nosys"
	version:  base.packages.age.version
	packages: base.packages.age.packages
	inputs: {
		src: base.packages.age.inputs.src
		go:  toolchain
		deps: [for d in base.packages.age.inputs.deps if d.attrs.module != "golang.org/x/sys" {d}]
	}
}
`
	if err := os.WriteFile(filepath.Join(dir, "nosys.cue"), []byte(nosys), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: os.Getenv, store: storeDir}
	if code := run(e, []string{"--store", storeDir, "realize", "--no-link", "-A", "ageNoSys", "."}); code != 1 {
		t.Fatalf("realize: exit %d, want 1\n%s", code, stderr.String())
	}
	said := regexp.MustCompile("age-nosys v1\\.3\\.2 needs a module its inputs\\.deps do not have: golang\\.org/x/sys v[0-9.]+: run `hephc update filippo\\.io/age@v1\\.3\\.2`")
	if !said.MatchString(stderr.String()) {
		t.Errorf("realize's error does not say which module is missing and how to pin it:\n%s", stderr.String())
	}
	m := regexp.MustCompile(`full log: (\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("realize's error names no log:\n%s", stderr.String())
	}
	log, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if last := lines[len(lines)-1]; !said.MatchString(last) {
		t.Errorf("the build log ends with %q, want the missing module and the command", last)
	}
}
