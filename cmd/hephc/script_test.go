package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.Init()
	testscript.Main(cleanupM{m}, map[string]func(){
		"hephc": func() { os.Exit(Main()) },
	})
}

// cueTool builds the standard cue command (the module's go.mod pins it as
// a tool) once per test binary, so scripts can check that `hephc init`
// makes the same files valid for it.
var cueTool = sync.OnceValues(func() (string, error) {
	dir, err := toolDir("hephc-cue-tool-")
	if err != nil {
		return "", err
	}
	exe := filepath.Join(dir, "cue")
	out, err := exec.Command("go", "build", "-o", exe, "cuelang.org/go/cmd/cue").CombinedOutput()
	if err != nil {
		return "", &buildError{err, string(out)}
	}
	return exe, nil
})

// toolDirs are the directories of the programs built for the scripts,
// removed when the test binary ends (cleanupM).
var toolDirs struct {
	sync.Mutex
	dirs []string
}

// toolDir makes a temporary directory that lasts as long as the test
// binary.
func toolDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err == nil {
		toolDirs.Lock()
		toolDirs.dirs = append(toolDirs.dirs, dir)
		toolDirs.Unlock()
	}
	return dir, err
}

func removeToolDirs() {
	toolDirs.Lock()
	defer toolDirs.Unlock()
	for _, d := range toolDirs.dirs {
		os.RemoveAll(d)
	}
	toolDirs.dirs = nil
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "building cue: " + e.err.Error() + "\n" + e.out }

// testBuilder builds internal/testbuilder (a static program scripts use as
// a builder) once per test binary.
var testBuilder = sync.OnceValues(func() (string, error) {
	dir, err := toolDir("hephc-testbuilder-")
	if err != nil {
		return "", err
	}
	exe := filepath.Join(dir, "testbuilder")
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, "hephc.dev/hephc/internal/testbuilder")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &buildError{err, string(out)}
	}
	return exe, nil
})

// mktool writes the test builder into the current directory and tool.cue
// beside it, which pins it as `tool` (a #LocalFile) in package system.
func mktool(ts *testscript.TestScript, neg bool, args []string) {
	if err := writeTool(ts.MkAbs(".")); err != nil {
		ts.Fatalf("%v", err)
	}
}

func writeTool(dir string) error {
	exe, err := testBuilder()
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, "testbuilder")
	b, err := os.ReadFile(exe)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return err
	}
	tree, err := fstree.HashTree(dst, fstree.HashOptions{})
	if err != nil {
		return err
	}
	cue := fmt.Sprintf("package system\n\nimport \"hephc.dev/heph\"\n\ntool: heph.#LocalFile & {file: \"testbuilder\", hash: %q}\n", tree.Hash.String())
	return os.WriteFile(filepath.Join(dir, "tool.cue"), []byte(cue), 0o644)
}

// replace FILE OLD NEW replaces every OLD in FILE with NEW; FILE must
// contain OLD, so that a script cannot go on testing an unchanged file.
func replace(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! replace")
	}
	if len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	file := ts.MkAbs(args[0])
	b, err := os.ReadFile(file)
	ts.Check(err)
	if !strings.Contains(string(b), args[1]) {
		ts.Fatalf("replace: %s does not contain %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(file, []byte(strings.ReplaceAll(string(b), args[1], args[2])), 0o644))
}

// TestScripts runs the CLI scripts in testdata/script. $REPO is the
// repository's root, for scripts that check its own files (system.cue,
// policy.cue).
func TestScripts(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("HEPHC_CACHE", filepath.Join(e.WorkDir, ".cache"))
			e.Setenv("HEPHC_STORE", filepath.Join(e.WorkDir, ".store"))
			e.Setenv("REPO", repo)
			return ociRegistries(e) // oci_test.go
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mktool":   mktool,
			"modproxy": modproxy, // modproxy_test.go
			"replace":  replace,
			// cue runs the standard cue tool built from the pinned module.
			"cue": func(ts *testscript.TestScript, neg bool, args []string) {
				exe, err := cueTool()
				if err != nil {
					ts.Fatalf("%v", err)
				}
				err = ts.Exec(exe, args...)
				if neg != (err != nil) {
					ts.Fatalf("cue %v: unexpected result: %v", args, err)
				}
			},
		},
	})
}
