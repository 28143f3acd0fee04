package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/builder"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/imagetest"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/realize"
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

// runTests runs the tests that have no passing result (all of them with
// rerun) in sandboxes, records each run as a test-result statement
// (signed with the store owner's key when there is one), and returns a
// line per test. The error joins the failed tests' build errors (their
// position and log tail), as realize's do.
func runTests(ctx context.Context, e *env, st *store.Store, g *eval.Graph, tests []*policy.Test, opts testRunOptions) ([]testOutcome, error) {
	sg := pipeline.StoreGraph(g)
	byHash := map[store.DrvHash]*policy.Test{}
	var paths []store.Path
	for _, t := range tests {
		if t.Off != "" {
			continue
		}
		sg.Derivations[t.Hash] = t.Drv
		sg.Origins[t.Hash] = store.Origin{Attr: t.Attr, Pos: t.Pos}
		for h, d := range t.Extra {
			sg.Derivations[h] = d
			sg.Origins[h] = store.Origin{Attr: t.Attr + ".deps"}
		}
		byHash[t.Hash] = t
		paths = append(paths, t.Path())
	}
	valid, err := st.ValidPaths(ctx, paths)
	if err != nil {
		return nil, err
	}
	att, key, err := ownerAttester(e, st) // attest.go
	if err != nil {
		return nil, err
	}
	// Image tests run on the host, once their images are built.
	var toRun, toRerun []store.DrvHash
	var images []*policy.Test
	for _, t := range tests {
		switch {
		case t.Off != "":
		case t.Image != nil && (!valid[t.Path()] || opts.rerun):
			images = append(images, t)
			toRun = append(toRun, t.Of[0])
			delete(sg.Derivations, t.Hash)
		case !valid[t.Path()]:
			toRun = append(toRun, t.Hash)
		case opts.rerun:
			toRerun = append(toRerun, t.Hash)
		}
	}
	// Durations: from a test's start to its end, as realize reports them.
	var mu sync.Mutex
	started, took := map[store.DrvHash]time.Time{}, map[store.DrvHash]time.Duration{}
	var prog *progress
	if opts.progress {
		prog = newProgress(e)
	}
	events := func(ev realize.Event) {
		mu.Lock()
		switch ev.Kind {
		case realize.EventStarted:
			started[ev.Drv] = time.Now()
		case realize.EventBuilt, realize.EventFailed:
			if t0, ok := started[ev.Drv]; ok {
				took[ev.Drv] = time.Since(t0)
			}
		}
		mu.Unlock()
		if prog != nil {
			prog.event(ev)
		}
	}
	ropts := realize.Options{Jobs: opts.jobs, KeepGoing: true, Timeout: opts.timeout, Getenv: e.getenv, Events: events, SourceDir: opts.sourceDir, Attester: att}
	failures := map[store.DrvHash]*realize.BuildError{}
	skipped := map[store.DrvHash]error{}
	var errs []error
	if len(toRun) > 0 {
		_, err := realize.Realize(ctx, st, sg, toRun, ropts)
		if prog != nil {
			prog.finish()
			prog = nil
		}
		if err != nil && !collectTestErrors(err, byHash, failures, skipped) {
			return nil, err
		}
	} else if prog != nil {
		prog.finish()
		prog = nil
	}
	ropts.Events, ropts.Attester = nil, nil
	for _, h := range toRerun {
		t0 := time.Now()
		fmt.Fprintf(e.stderr, "rerunning %s\n", byHash[h].Attr)
		if _, err := realize.CheckPath(ctx, st, sg, h, ropts); err != nil && !collectTestErrors(err, byHash, failures, skipped) {
			return nil, err
		}
		took[h] = time.Since(t0)
	}
	var booted map[store.DrvHash]*imageTestRun
	if images = notSkipped(images, skipped); len(images) > 0 {
		if booted, err = runImageTests(ctx, e, st, sg, images, opts.jobs); err != nil {
			return nil, err
		}
	}
	ran := map[store.DrvHash]bool{}
	for _, h := range append(toRun, toRerun...) {
		ran[h] = true
	}
	for h, r := range booted {
		ran[h], took[h] = true, r.took
		if r.fail != nil {
			failures[h] = r.fail
		}
	}
	var outs []testOutcome
	for _, t := range tests {
		o := testOutcome{Test: t.Attr, Position: t.Pos.Rel(e.cwd), Tested: []string{}}
		for _, h := range t.Of {
			if n := g.Nodes[h]; n != nil {
				o.Tested = append(o.Tested, n.Path().String())
			}
		}
		if t.Off != "" {
			o.Name, o.Result, o.Off = strings.TrimSuffix(o.Test, ".tests.go"), "off", t.Off
			outs = append(outs, o)
			continue
		}
		o.Name, o.Path, o.Seconds = t.Drv.Name, t.Path().String(), took[t.Hash].Round(time.Millisecond).Seconds()
		var res builder.TestResult
		switch {
		case failures[t.Hash] != nil:
			o.Result = "fail"
			res = failedChecks(failures[t.Hash].LogPath)
			if r := booted[t.Hash]; r != nil {
				res = r.res
			}
			o.Failed = res.Failed
			if len(o.Failed) == 0 {
				o.Failed = []string{t.Drv.Name}
			}
			errs = append(errs, failures[t.Hash])
		case skipped[t.Hash] != nil:
			o.Result = "skip"
			errs = append(errs, skipped[t.Hash])
			outs = append(outs, o)
			continue
		default:
			o.Result = "pass"
			b, err := os.ReadFile(filepath.Join(st.Physical(t.Path()), builder.TestResultFile))
			if err == nil {
				err = json.Unmarshal(b, &res)
			}
			if err != nil {
				return nil, fmt.Errorf("test %s: reading its result: %w", t.Attr, err)
			}
			o.Passed, o.Skipped, o.Cached = len(res.Passed), len(res.Skipped), !ran[t.Hash]
		}
		when, err := recordTestRun(ctx, st, g, t, &res, o.Result == "pass", ran[t.Hash], key)
		if err != nil {
			return nil, err
		}
		o.When = when.UTC().Format(time.RFC3339)
		outs = append(outs, o)
	}
	return outs, errors.Join(errs...)
}

// collectTestErrors sorts the errors of a realization of tests: the
// failed tests' build errors, and the tests skipped because something
// they need failed. It reports whether err held nothing else.
func collectTestErrors(err error, tests map[store.DrvHash]*policy.Test, failures map[store.DrvHash]*realize.BuildError, skipped map[store.DrvHash]error) bool {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	all := true
	for _, one := range errs {
		var be *realize.BuildError
		var de *realize.DependencyError
		switch {
		case errors.As(one, &be) && tests[be.Drv] != nil:
			failures[be.Drv] = be
		case errors.As(one, &be):
			// A dependency of tests failed: every test not yet accounted
			// for that did not pass is skipped with this error.
			for h := range tests {
				if failures[h] == nil && skipped[h] == nil {
					skipped[h] = one
				}
			}
		case errors.As(one, &de):
		default:
			all = false
		}
	}
	return all
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

// requireTests is realize's part of the policy's tests rule: it runs the
// required tests that have no passing result yet, and fails (so that no
// generation is recorded) when one fails or a program's tests are off.
func requireTests(ctx context.Context, e *env, st *store.Store, g *eval.Graph, jobs int, timeout time.Duration, sourceDir string) error {
	ls, err := pipeline.SizeLimits(g)
	if err != nil || len(ls) == 0 {
		return err
	}
	req, err := policy.RequiredTests(g, ls)
	if err != nil || len(req) == 0 {
		return err
	}
	_, missing, _, err := policy.CheckTests(g, ls, testStatus(ctx, st, g))
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		// Tests realize built as roots (a #Test written in the
		// configuration): their results are recorded.
		var all []*policy.Test
		for _, r := range req {
			all = append(all, r.Test)
		}
		_, err := runTests(ctx, e, st, g, all, testRunOptions{jobs: jobs, timeout: timeout, sourceDir: sourceDir})
		return err
	}
	fmt.Fprintf(e.stderr, "running %s the policy requires\n", plural(len(missing), "test"))
	outs, err := runTests(ctx, e, st, g, missing, testRunOptions{jobs: jobs, timeout: timeout, sourceDir: sourceDir})
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
