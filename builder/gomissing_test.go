package builder

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// What go 1.26 prints when a build needs a module the offline module
// cache does not have (GOPROXY=off, GOFLAGS=-mod=readonly): a go.mod that
// prunes its graph (go 1.17 and later) downloads when a package is
// loaded; an older one needs the go.mod of each dependency first.
const (
	goOutPackage = "go: downloading golang.org/x/sys v0.30.0\nmain.go:3:8: module lookup disabled by GOPROXY=off\n"
	goOutGraph   = "go: golang.org/x/sys@v0.30.0: module lookup disabled by GOPROXY=off\n"
	goOutTwo     = "go: downloading golang.org/x/term v0.29.0\ngo: downloading golang.org/x/sys v0.30.0\n" +
		"main.go:3:8: module lookup disabled by GOPROXY=off\nterm.go:4:2: module lookup disabled by GOPROXY=off\n"
	goOutCompile = "# example.com/p\n./main.go:5:2: undefined: unix.Getpidd\n"
)

func TestMissingModules(t *testing.T) {
	sys := module.Version{Path: "golang.org/x/sys", Version: "v0.30.0"}
	term := module.Version{Path: "golang.org/x/term", Version: "v0.29.0"}
	for _, c := range []struct {
		name, out string
		want      []module.Version
	}{
		{"package", goOutPackage, []module.Version{sys}},
		{"graph", goOutGraph, []module.Version{sys}},
		{"two", goOutTwo, []module.Version{sys, term}},
		{"compile error", goOutCompile, nil},
		{"downloading, not refused", "go: downloading golang.org/x/sys v0.30.0\n", nil},
	} {
		got := missingModules([]byte(c.out))
		if len(got) != len(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			}
		}
	}
}

// TestGoBuildFailedNamesTheModule checks the error of a go build that
// needed a module its inputs lack: the program, the module and version,
// what its deps have of that module, and the command that fixes it, on
// the last line (the end of the build log is what realize shows).
func TestGoBuildFailedNamesTheModule(t *testing.T) {
	info := &realize.BuildInfo{
		Derivation: &store.Derivation{Name: "age", Version: "v1.3.2"},
		Inputs: map[string]realize.InputInfo{
			"src":    {Attrs: map[string]any{"module": "filippo.io/age", "version": "v1.3.2"}},
			"deps.0": {Attrs: map[string]any{"module": "golang.org/x/sys", "version": "v0.29.0"}},
			"deps.1": {Attrs: map[string]any{"module": "filippo.io/edwards25519", "version": "v1.1.0"}},
		},
	}
	exitErr := &exec.ExitError{}
	err := goBuildFailed(info, &goStderr{buf: []byte(goOutPackage)}, exitErr)
	if !errors.Is(err, exitErr) {
		t.Errorf("got %v, want it to wrap the go command's error", err)
	}
	lines := strings.Split(err.Error(), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"age v1.3.2 needs a module its inputs.deps do not have: golang.org/x/sys v0.30.0 (they have v0.29.0)", "run `hephc update filippo.io/age@v1.3.2`"} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %q does not say %q", last, want)
		}
	}
	if err := goBuildFailed(info, &goStderr{buf: []byte(goOutCompile)}, exitErr); strings.Contains(err.Error(), "needs") {
		t.Errorf("a compile error got %q, want no module named", err)
	}
}

func TestGoStderrKeepsTheEnd(t *testing.T) {
	var w goStderr
	w.Write([]byte(strings.Repeat("x", goStderrKeep)))
	w.Write([]byte(goOutGraph))
	if len(w.buf) != goStderrKeep || !strings.HasSuffix(string(w.buf), goOutGraph) {
		t.Errorf("kept %d bytes ending %q, want %d ending with the last write", len(w.buf), w.buf[len(w.buf)-40:], goStderrKeep)
	}
}
