package builder

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/realize"
)

func init() {
	register(builtins.GoTest, goTest)
	register(builtins.RunTest, runTest)
}

// The files of a test's output: the result (TestResult, JSON) and the
// test's whole output.
const (
	TestResultFile = "result.json"
	TestLogFile    = "log"
)

// TestResult is a test's result.json: the checks that passed, failed and
// were skipped (for go test, Go tests as PACKAGE.TestName and packages as
// PACKAGE). Only a passing test's output is ever installed, so Result is
// always PASSED in a store; the builder writes it before it fails too, for
// the log.
type TestResult struct {
	Result  string   `json:"result"`
	Passed  []string `json:"passed"`
	Failed  []string `json:"failed"`
	Skipped []string `json:"skipped"`
}

// goTest runs go test of attrs.packages (with -run attrs.run and -skip attrs.skip, if any) of
// the module in input src, set up as goBuild sets up a build (the same
// module cache, toolchain and environment, offline), and records which
// tests passed, failed and were skipped in $out/result.json, the output
// in $out/log. A failing test fails the build.
func goTest(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	job, err := setupGo(info, "go-test", env, stdout) // gobuild.go
	if err != nil {
		return err
	}
	packages, err := stringsAttr(info.Derivation.Attrs, "packages") // fetchfile.go
	if err != nil {
		return fmt.Errorf("go-test: %w", err)
	}
	if len(packages) == 0 {
		packages = []string{"./..."}
	}
	cmdArgs := append(append([]string{"test", "-json"}, goBuildFlags...), "-buildvcs=false")
	if run, _ := info.Derivation.Attrs["run"].(string); run != "" {
		cmdArgs = append(cmdArgs, "-run", run)
	}
	if skip, _ := info.Derivation.Attrs["skip"].(string); skip != "" {
		cmdArgs = append(cmdArgs, "-skip", skip)
	}
	cmd := job.command(stdout, append(cmdArgs, packages...))
	if err := os.MkdirAll(info.Out, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(info.Out, TestLogFile))
	if err != nil {
		return err
	}
	defer logf.Close()
	out := io.MultiWriter(stdout, logf)
	cmd.Stderr = out
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("go test: %w", err)
	}
	res := readTestEvents(pipe, out)
	runErr := cmd.Wait()
	if err := reportStdCacheUse(info, stdout); err != nil { // gostdcache.go
		return fmt.Errorf("go-test: %w", err)
	}
	if err := writeTestResult(info.Out, res, runErr == nil && len(res.Failed) == 0); err != nil {
		return err
	}
	if runErr != nil || len(res.Failed) > 0 {
		if len(res.Failed) > 0 {
			return fmt.Errorf("go test: %d failed: %s", len(res.Failed), strings.Join(res.Failed, ", "))
		}
		return fmt.Errorf("go test: %w", runErr)
	}
	if len(res.Passed) == 0 {
		return fmt.Errorf("go test: no test ran in %s", strings.Join(packages, " "))
	}
	return nil
}

// testEvent is one line of go test -json (cmd/test2json).
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// readTestEvents reads go test -json from r, writes the human output to
// out, and collects the checks' results: every test and subtest, and
// each package (a package with no test files is neither).
func readTestEvents(r io.Reader, out io.Writer) *TestResult {
	res := &TestResult{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev testEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Action == "" {
			fmt.Fprintln(out, sc.Text()) // build errors and the like
			continue
		}
		if ev.Action == "output" {
			io.WriteString(out, ev.Output)
			continue
		}
		name := ev.Package
		if ev.Test != "" {
			name += "." + ev.Test
		}
		switch ev.Action {
		case "pass":
			res.Passed = append(res.Passed, name)
		case "fail":
			res.Failed = append(res.Failed, name)
		case "skip":
			if ev.Test != "" {
				res.Skipped = append(res.Skipped, name)
			}
		}
	}
	for _, l := range []*[]string{&res.Passed, &res.Failed, &res.Skipped} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
		if *l == nil {
			*l = []string{}
		}
	}
	return res
}

// writeTestResult writes res to dir's TestResultFile.
func writeTestResult(dir string, res *TestResult, passed bool) error {
	res.Result = "PASSED"
	if !passed {
		res.Result = "FAILED"
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, TestResultFile), append(b, '\n'), 0o644)
}

// runTest runs attrs.program with attrs.args (placeholders expanded by
// the store) in /build, its output in the build's log and $out/log; it
// passes when the program exits 0.
func runTest(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	prog, err := attr(info, "program")
	if err != nil {
		return err
	}
	prog = expandInputs(info, prog)
	targs, err := stringsAttr(info.Derivation.Attrs, "args")
	if err != nil {
		return fmt.Errorf("run-test: %w", err)
	}
	for i, a := range targs {
		targs[i] = expandInputs(info, a)
	}
	if err := os.MkdirAll(info.Out, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(info.Out, TestLogFile))
	if err != nil {
		return err
	}
	defer logf.Close()
	out := io.MultiWriter(stdout, logf)
	cmd := exec.Command(prog, targs...)
	cmd.Dir = "/build"
	cmd.Env = append(slices.Clone(env), "TMPDIR=/tmp", "out="+info.Out)
	cmd.Stdout, cmd.Stderr = out, out
	runErr := cmd.Run()
	name := info.Derivation.Name
	res := &TestResult{Passed: []string{}, Failed: []string{}, Skipped: []string{}}
	if runErr == nil {
		res.Passed = []string{name}
	} else {
		res.Failed = []string{name}
	}
	if err := writeTestResult(info.Out, res, runErr == nil); err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("%s: %w", prog, runErr)
	}
	return nil
}

// expandInputs replaces each @{input} in s by the input's store path.
func expandInputs(info *realize.BuildInfo, s string) string {
	for name, in := range info.Inputs {
		s = strings.ReplaceAll(s, "@{"+name+"}", in.Path)
	}
	return s
}
