package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/builder"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/imagetest"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

func init() {
	register(&command{
		name:    "test",
		args:    "[-A ATTR] [--json] [--rerun] [-j N] [FILE.cue…|DIR]",
		summary: "run the tests of the configuration's closure in sandboxes (a test whose derivation did not change is not rerun) and record each result as an in-toto test-result statement",
		flags: func(fs *pflag.FlagSet) {
			fs.StringP("attr", "A", "", "test only this attribute's closure, e.g. base.packages.age")
			fs.Bool("json", false, "print the results as JSON")
			fs.Bool("rerun", false, "run the tests that have a passing result again")
			fs.IntP("jobs", "j", runtime.NumCPU(), "tests (and builds) to run at once")
			fs.Duration("timeout", sandbox.DefaultTimeout, "time limit of each test")
		},
		run: runTestCommand,
	})
}

// TestResultsDir is the directory of a store's directory that keeps the
// test-result envelopes (trust.Dir's layout): beside the test's output and
// beside each path it tests, so that hephc attestations lists them.
const TestResultsDir = "test-results"

func testResults(st *store.Store) trust.Dir { return trust.Dir(filepath.Join(st.Dir, TestResultsDir)) }

// testOutcome is one test as hephc test reports it.
type testOutcome struct {
	Test     string   `json:"test"` // its attribute
	Name     string   `json:"name"`
	Path     string   `json:"path,omitempty"`
	Tested   []string `json:"tested"`
	Result   string   `json:"result"` // pass, fail, skip (something it needs failed), off
	Cached   bool     `json:"cached"` // passed before: not rerun
	Seconds  float64  `json:"seconds"`
	Passed   int      `json:"passed"`
	Failed   []string `json:"failed,omitempty"`
	Skipped  int      `json:"skipped"`
	Off      string   `json:"off,omitempty"`
	Position string   `json:"position,omitempty"`
	When     string   `json:"when,omitempty"`
}

// testRunOptions are how runTests runs tests.
type testRunOptions struct {
	rerun     bool
	jobs      int
	timeout   time.Duration
	sourceDir string
	progress  bool
}

func runTestCommand(e *env, fs *pflag.FlagSet, args []string) error {
	attr, _ := fs.GetString("attr")
	asJSON, _ := fs.GetBool("json")
	rerun, _ := fs.GetBool("rerun")
	jobs, _ := fs.GetInt("jobs")
	timeout, _ := fs.GetDuration("timeout")
	if !fs.Changed("timeout") {
		timeout = 0
	}
	if jobs < 1 {
		return usagef("-j wants at least 1, got %d", jobs)
	}
	// The whole configuration, so that the tests written beside what
	// they test are seen: -A selects the roots whose closure is tested.
	g, _, err := evaluate(e, evaluation{args: args, useCache: true})
	if err != nil {
		return err
	}
	var from []store.DrvHash
	for _, a := range g.RootNames() {
		if attr == "" || a == attr || strings.HasPrefix(a, attr+".") {
			from = append(from, g.Roots[a])
		}
	}
	if len(from) == 0 {
		return fmt.Errorf("no derivation at %s", attr)
	}
	tests, err := policy.Tests(g, from...)
	if err != nil {
		return err
	}
	st, ctx, done, err := lockedStore(e)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	outs, runErr := runTests(ctx, e, st, g, tests, testRunOptions{rerun: rerun, jobs: jobs, timeout: timeout, sourceDir: configDir(e, args), progress: !asJSON})
	if outs == nil && runErr != nil {
		return runErr
	}
	if asJSON {
		if outs == nil {
			outs = []testOutcome{}
		}
		b, err := json.MarshalIndent(outs, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", b)
		if runErr != nil {
			return silentError{}
		}
		return nil
	}
	printTestOutcomes(e, outs, time.Since(start))
	return runErr
}

// printTestOutcomes prints a line per test, then what was run.
func printTestOutcomes(e *env, outs []testOutcome, took time.Duration) {
	var ran, cached, failed, off int
	for _, o := range outs {
		var what string
		switch {
		case o.Result == "off":
			off++
			what = "off: " + o.Off
		case o.Cached:
			cached++
			what = "cached (passed " + o.When + ")"
		default:
			ran++
			what = fmt.Sprintf("%.1fs", o.Seconds)
		}
		if o.Result == "fail" || o.Result == "skip" {
			failed++
		}
		checks := ""
		if o.Result == "pass" {
			checks = fmt.Sprintf("  %d passed", o.Passed)
			if o.Skipped > 0 {
				checks += fmt.Sprintf(", %d skipped", o.Skipped)
			}
		}
		if len(o.Failed) > 0 {
			checks = "  failed: " + strings.Join(o.Failed, ", ")
		}
		fmt.Fprintf(e.stdout, "%-4s  %s  %s%s\n", o.Result, o.Test, what, checks)
	}
	switch {
	case len(outs) == 0:
		fmt.Fprintln(e.stderr, "no tests in this closure")
	case ran == 0 && failed == 0:
		fmt.Fprintf(e.stderr, "%s passed before: nothing rerun (--rerun runs them again)\n", plural(cached, "test"))
	default:
		fmt.Fprintf(e.stderr, "%s: %d run, %d cached (not rerun), %d failed, %d off, in %.1fs\n", plural(len(outs), "test"), ran, cached, failed, off, took.Seconds())
	}
}

// failLine is a failed Go test in go test's output.
var failLine = regexp.MustCompile(`^\s*--- FAIL: (\S+)`)

// failedChecks reads the failed Go tests from a failed test's log.
func failedChecks(logPath string) builder.TestResult {
	res := builder.TestResult{Result: trust.TestFailed}
	b, err := os.ReadFile(logPath)
	if err != nil {
		return res
	}
	for _, l := range strings.Split(string(b), "\n") {
		if m := failLine.FindStringSubmatch(l); m != nil {
			res.Failed = append(res.Failed, m[1])
		}
	}
	sort.Strings(res.Failed)
	return res
}

// recordTestRun keeps the test-result statement of t's run beside the
// test's output and each tested path, signed with key when there is one.
// A test that was not run now is recorded already: it returns when that
// was (the test's output was registered then).
func recordTestRun(ctx context.Context, st *store.Store, g *eval.Graph, t *policy.Test, res *builder.TestResult, passed, ran bool, key *trust.SecretKey) (time.Time, error) {
	run := &trust.TestRun{
		Test:       trust.TestSubject{Path: t.Path().String(), Derivation: hexHash(t.Hash)},
		Derivation: hexHash(t.Hash),
		Result:     trust.TestPassed,
		Passed:     res.Passed, Failed: res.Failed, Warned: res.Skipped,
		Runner: BuilderID,
		Time:   time.Now().UTC().Truncate(time.Second),
	}
	if !passed {
		run.Result = trust.TestFailed
	}
	if t.Image != nil {
		run.Runner += " (the host's " + imagetest.QEMUVersion() + ")"
	}
	if info, ok, err := st.QueryPathInfo(ctx, t.Path()); err != nil {
		return time.Time{}, err
	} else if ok {
		run.Test.ContentHash = info.ContentHash.String()
		if !ran {
			// Passed before: recorded then, unless realize built it as
			// one of its roots (then it is recorded now, at that time).
			run.Time = time.Unix(info.Registered, 0).UTC()
			if envs, err := testResults(st).List(t.Path().Base()); err != nil || len(envs) > 0 {
				return run.Time, err
			}
		}
	}
	var bases []string
	bases = append(bases, t.Path().Base())
	for _, h := range t.Of {
		n := g.Nodes[h]
		if n == nil {
			continue
		}
		s := trust.TestSubject{Path: n.Path().String(), Derivation: hexHash(h)}
		if info, ok, err := st.QueryPathInfo(ctx, n.Path()); err != nil {
			return time.Time{}, err
		} else if ok {
			s.ContentHash = info.ContentHash.String()
		}
		run.Tested = append(run.Tested, s)
		bases = append(bases, n.Path().Base())
	}
	env, err := trust.SignTestResult(run, key)
	if err != nil {
		return time.Time{}, err
	}
	for _, b := range bases {
		if _, _, err := testResults(st).Add(b, env); err != nil {
			return time.Time{}, err
		}
	}
	return run.Time, nil
}

func hexHash(h store.DrvHash) string { return hex.EncodeToString(h[:]) }

// requiredTests plans realize's part of the policy's tests rule: the
// run of those of the required tests (policyTests) that have no passing
// result yet, nil when every one has.
func requiredTests(ctx context.Context, e *env, st *store.Store, g *eval.Graph, tests []*policy.Test, opts testRunOptions) (*testRun, error) {
	status := testStatus(ctx, st, g)
	var missing []*policy.Test
	for _, t := range tests {
		ok, _, err := status(t)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	return newTestRun(ctx, e, st, g, missing, opts)
}

// policyTests returns the tests the policy requires of g (none that is
// off: those are violations already): what realize runs unless their
// results are in the store or a binary cache, and what push sends with
// a configuration.
func policyTests(g *eval.Graph) ([]*policy.Test, error) {
	ls, err := pipeline.SizeLimits(g)
	if err != nil || len(ls) == 0 {
		return nil, err
	}
	req, err := policy.RequiredTests(g, ls)
	if err != nil {
		return nil, err
	}
	out := make([]*policy.Test, len(req))
	for i, r := range req {
		out[i] = r.Test
	}
	return out, nil
}

// addTest adds t's derivation, and those only it needs, to sg.
func addTest(sg *store.Graph, t *policy.Test) {
	sg.Derivations[t.Hash] = t.Drv
	sg.Origins[t.Hash] = store.Origin{Attr: t.Attr, Pos: t.Pos}
	for h, d := range t.Extra {
		sg.Derivations[h] = d
		sg.Origins[h] = store.Origin{Attr: t.Attr + ".deps"}
	}
}

// requireTests ends realize's part of the policy's tests rule: it
// records and prints the run of the required tests (tr, which realize
// ran beside its builds; nil when none was missing), and fails (so that
// no generation is recorded) when one failed.
func requireTests(ctx context.Context, e *env, st *store.Store, g *eval.Graph, tr *testRun, required []*policy.Test) error {
	if tr == nil {
		// Tests realize built as roots (a #Test written in the
		// configuration): their results are recorded.
		if len(required) == 0 {
			return nil
		}
		_, err := runTests(ctx, e, st, g, required, testRunOptions{jobs: 1})
		return err
	}
	outs, err := tr.outcomes(ctx)
	for _, o := range outs {
		fmt.Fprintf(e.stderr, "%-4s  %s  %.1fs\n", o.Result, o.Test, o.Seconds)
	}
	if err != nil {
		return fmt.Errorf("the policy requires tests that failed; no generation recorded: %w", err)
	}
	return nil
}

// checkTestResults is check's part of the tests rule: the built paths
// whose tests have no passing result in the store, and how many tests
// wait for what they test to be built.
func checkTestResults(e *env, g *eval.Graph) (policy.Violations, int, error) {
	ls, err := pipeline.SizeLimits(g)
	if err != nil || len(ls) == 0 {
		return nil, 0, err
	}
	status := func(*policy.Test) (bool, bool, error) { return false, false, nil }
	dir, err := storeDir(e)
	if err != nil {
		return nil, 0, err
	}
	if _, err := os.Stat(filepath.Join(dir, store.DBFile)); err == nil {
		st, err := openStore(e)
		if err != nil {
			return nil, 0, err
		}
		defer st.Close()
		status = testStatus(context.Background(), st, g)
	}
	vs, _, waiting, err := policy.CheckTests(g, ls, status)
	return vs, waiting, err
}

// testStatus says whether a test has a passing result in st (its output
// is valid) and whether a path it tests (a derivation of g) is built.
func testStatus(ctx context.Context, st *store.Store, g *eval.Graph) policy.TestStatus {
	return func(t *policy.Test) (bool, bool, error) {
		ps := []store.Path{t.Path()}
		for _, h := range t.Of {
			if n := g.Nodes[h]; n != nil {
				ps = append(ps, n.Path())
			}
		}
		v, err := st.ValidPaths(ctx, ps)
		if err != nil {
			return false, false, err
		}
		built := false
		for _, p := range ps[1:] {
			built = built || v[p]
		}
		return v[t.Path()], built, nil
	}
}
