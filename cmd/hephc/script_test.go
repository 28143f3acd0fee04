package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"hephc.dev/hephc/store/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.Init()
	testscript.Main(m, map[string]func(){
		"hephc": func() { os.Exit(Main()) },
	})
}

// cueTool builds the standard cue command (the module's go.mod pins it as
// a tool) once per test binary, so scripts can check that `hephc init`
// makes the same files valid for it.
var cueTool = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "hephc-cue-tool-")
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

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "building cue: " + e.err.Error() + "\n" + e.out }

// TestScripts runs the CLI scripts in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("HEPHC_CACHE", filepath.Join(e.WorkDir, ".cache"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
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
