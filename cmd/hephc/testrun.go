package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"hephc.dev/hephc/builder"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/imagetest"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// testRun runs tests: a Go test is a derivation that realize builds in
// a sandbox; an image test boots its image in the host's QEMU as soon as
// the image is built. A run stands alone (hephc test: run) or rides
// along the realize of what its tests test (hephc realize and its
// policy: roots, event, settle), so that the tests start as soon as what
// they test is built instead of after every build.
type testRun struct {
	e     *env
	st    *store.Store
	g     *eval.Graph
	tests []*policy.Test
	opts  testRunOptions
	// sg is g's derivations and the tests'.
	sg      *store.Graph
	byHash  map[store.DrvHash]*policy.Test
	goTests []store.DrvHash // to build
	toRerun []store.DrvHash // passed before, run again (--rerun)
	// images are the image tests to boot, by the image they boot; a test
	// leaves the map when its boot starts.
	images map[store.DrvHash][]*policy.Test
	att    realize.Attester
	key    *trust.SecretKey
	say    func(string) // a line for people, above realize's progress

	mu       sync.Mutex
	started  map[store.DrvHash]time.Time
	took     map[store.DrvHash]time.Duration
	failures map[store.DrvHash]*realize.BuildError
	skipped  map[store.DrvHash]error
	booted   map[store.DrvHash]*imageTestRun
	bootErr  error // a boot that could not run or keep its result
	booting  sync.WaitGroup
	bootSem  chan struct{}
	bootCtx  context.Context
	stop     context.CancelFunc // ends the boots
}

// newTestRun plans a run of tests: those with no passing result (all of
// them with opts.rerun) are to run. The images' boots run in ctx.
func newTestRun(ctx context.Context, e *env, st *store.Store, g *eval.Graph, tests []*policy.Test, opts testRunOptions) (*testRun, error) {
	bootCtx, stop := context.WithCancel(ctx)
	tr := &testRun{
		e: e, st: st, g: g, tests: tests, opts: opts,
		sg: pipeline.StoreGraph(g), byHash: map[store.DrvHash]*policy.Test{}, images: map[store.DrvHash][]*policy.Test{},
		say:     func(s string) { fmt.Fprintln(e.stderr, s) },
		started: map[store.DrvHash]time.Time{}, took: map[store.DrvHash]time.Duration{},
		failures: map[store.DrvHash]*realize.BuildError{}, skipped: map[store.DrvHash]error{},
		booted: map[store.DrvHash]*imageTestRun{}, bootSem: make(chan struct{}, max(opts.jobs, 1)), bootCtx: bootCtx, stop: stop,
	}
	var paths []store.Path
	for _, t := range tests {
		if t.Off != "" {
			continue
		}
		addTest(tr.sg, t) // test.go
		tr.byHash[t.Hash] = t
		paths = append(paths, t.Path())
	}
	valid, err := st.ValidPaths(ctx, paths)
	if err == nil {
		tr.att, tr.key, err = ownerAttester(e, st) // attest.go
	}
	if err != nil {
		stop()
		return nil, err
	}
	for _, t := range tests {
		switch {
		case t.Off != "":
		case t.Image != nil && (!valid[t.Path()] || opts.rerun):
			// Run on the host, not built: out of the graph realize sees.
			tr.images[t.Of[0]] = append(tr.images[t.Of[0]], t)
			delete(tr.sg.Derivations, t.Hash)
		case !valid[t.Path()]:
			tr.goTests = append(tr.goTests, t.Hash)
		case opts.rerun:
			tr.toRerun = append(tr.toRerun, t.Hash)
		}
	}
	return tr, nil
}

// empty reports whether the run has nothing to run.
func (tr *testRun) empty() bool {
	return len(tr.goTests) == 0 && len(tr.toRerun) == 0 && len(tr.images) == 0
}

// roots are what realize must build for the run: the Go tests and the
// images to boot.
func (tr *testRun) roots() []store.DrvHash {
	roots := append([]store.DrvHash(nil), tr.goTests...)
	for h := range tr.images {
		roots = append(roots, h)
	}
	return roots
}

// imageTestWork is what an image test weighs in realize's priorities
// (realize.Options.After, about a second of a core a unit): a boot under
// TCG takes about a minute here (the workstation's console test 66 s),
// so the builds that lead to an image to boot start early.
const imageTestWork = 60

// after is realize.Options.After: the boots that wait for each image.
func (tr *testRun) after() map[store.DrvHash]int {
	m := make(map[store.DrvHash]int, len(tr.images))
	for h, ts := range tr.images {
		m[h] = imageTestWork * len(ts)
	}
	return m
}

// goTestSet is realize.Options.Tests: a Go test's failure stops nothing.
func (tr *testRun) goTestSet() map[store.DrvHash]bool {
	s := make(map[store.DrvHash]bool, len(tr.goTests))
	for _, h := range tr.goTests {
		s[h] = true
	}
	return s
}

// event is part of realize.Options.Events: it times the tests and boots
// an image's tests once the image is valid.
func (tr *testRun) event(ev realize.Event) {
	switch ev.Kind {
	case realize.EventStarted:
		tr.mu.Lock()
		tr.started[ev.Drv] = time.Now()
		tr.mu.Unlock()
	case realize.EventBuilt, realize.EventFailed:
		tr.mu.Lock()
		if t0, ok := tr.started[ev.Drv]; ok {
			tr.took[ev.Drv] = time.Since(t0)
		}
		tr.mu.Unlock()
	}
	switch ev.Kind {
	case realize.EventBuilt, realize.EventValid, realize.EventSubstituted:
		tr.boot(ev.Drv)
	}
}

// bootValid boots the images that are valid already.
func (tr *testRun) bootValid(ctx context.Context) error {
	var ps []store.Path
	for h := range tr.images {
		ps = append(ps, tr.sg.PathOf(h))
	}
	valid, err := tr.st.ValidPaths(ctx, ps)
	if err != nil {
		return err
	}
	for _, h := range sortedHashes(tr.images) {
		if valid[tr.sg.PathOf(h)] {
			tr.boot(h)
		}
	}
	return nil
}

// boot starts the tests of image h, jobs at once.
func (tr *testRun) boot(h store.DrvHash) {
	tr.mu.Lock()
	ts := tr.images[h]
	delete(tr.images, h)
	tr.mu.Unlock()
	for _, t := range ts {
		tr.booting.Add(1)
		go func() {
			defer tr.booting.Done()
			tr.bootSem <- struct{}{}
			defer func() { <-tr.bootSem }()
			tr.say(fmt.Sprintf("booting %s for %s (%s, TCG)", tr.sg.PathOf(h), t.Attr, imagetest.QEMUVersion()))
			r, err := runImageTest(tr.bootCtx, tr.st, tr.sg, t) // imagetest.go
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if err != nil {
				if tr.bootErr == nil {
					tr.bootErr = fmt.Errorf("%s: %w", t.Attr, err)
				}
				return
			}
			tr.booted[t.Hash], tr.took[t.Hash] = r, r.took
			if r.fail != nil {
				tr.failures[t.Hash] = r.fail
			}
		}()
	}
}

// settle sorts the error of the realize the run rode along: the failed
// Go tests' errors are the run's; it returns the rest (failed builds of
// what is not a test), which is the realize's failure. It waits for the
// boots that started.
func (tr *testRun) settle(err error) error {
	if err != nil {
		if err = tr.collect(err, false); err != nil {
			tr.stop() // the realize failed: its tests do not count
		}
	}
	tr.wait()
	return err
}

// wait waits for the boots that started.
func (tr *testRun) wait() {
	tr.booting.Wait()
	tr.stop()
}

// run runs the tests on their own (hephc test).
func (tr *testRun) run(ctx context.Context, prog *progress) error {
	events := tr.event
	if prog != nil {
		tr.say = prog.say
		events = func(ev realize.Event) { tr.event(ev); prog.event(ev) }
	}
	defer func() {
		if prog != nil {
			prog.finish()
		}
	}()
	if err := tr.bootValid(ctx); err != nil {
		return err
	}
	ropts := realize.Options{Jobs: tr.opts.jobs, KeepGoing: true, Timeout: tr.opts.timeout, Getenv: tr.e.getenv, Events: events, SourceDir: tr.opts.sourceDir, Attester: tr.att, After: tr.after()}
	if roots := tr.roots(); len(roots) > 0 {
		if _, err := realize.Realize(ctx, tr.st, tr.sg, roots, ropts); err != nil {
			if err := tr.collect(err, true); err != nil {
				tr.stop()
				tr.wait()
				return err
			}
		}
	}
	if prog != nil {
		prog.finish()
		prog = nil
	}
	ropts.Events, ropts.Attester = nil, nil
	for _, h := range tr.toRerun {
		t0 := time.Now()
		fmt.Fprintf(tr.e.stderr, "rerunning %s\n", tr.byHash[h].Attr)
		if _, err := realize.CheckPath(ctx, tr.st, tr.sg, h, ropts); err != nil {
			if err := tr.collect(err, true); err != nil {
				tr.stop()
				tr.wait()
				return err
			}
		}
		tr.mu.Lock()
		tr.took[h] = time.Since(t0)
		tr.mu.Unlock()
	}
	tr.wait()
	return nil
}

// collect sorts a realization's error: a failed test's build error is
// its failure. With alone (a run of tests only), any other failed build
// (an image, a test's dependency) skips the tests that have not ended;
// else it is the realize's failure and is returned, with anything that
// is not a build's error.
func (tr *testRun) collect(err error, alone bool) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var rest []error
	for _, one := range errs {
		var be *realize.BuildError
		var de *realize.DependencyError
		switch {
		case errors.As(one, &be) && tr.byHash[be.Drv] != nil:
			tr.failures[be.Drv] = be
		case errors.As(one, &be) && alone:
			// A dependency of tests failed: the tests that have not
			// ended are skipped with this error.
			for h := range tr.byHash {
				if tr.failures[h] == nil && tr.skipped[h] == nil && tr.booted[h] == nil && tr.took[h] == 0 {
					tr.skipped[h] = one
				}
			}
		case errors.As(one, &de):
		default:
			rest = append(rest, one)
		}
	}
	return errors.Join(rest...)
}

// outcomes records each test's run as a test-result statement (signed
// with the store owner's key when there is one) and returns a line per
// test. The error joins the failed tests' build errors (their position
// and log tail), as realize's do.
func (tr *testRun) outcomes(ctx context.Context) ([]testOutcome, error) {
	if tr.bootErr != nil {
		return nil, tr.bootErr
	}
	ran := map[store.DrvHash]bool{}
	for _, h := range append(tr.goTests, tr.toRerun...) {
		ran[h] = true
	}
	for h := range tr.booted {
		ran[h] = true
	}
	var errs []error
	var outs []testOutcome
	for _, t := range tr.tests {
		o := testOutcome{Test: t.Attr, Position: t.Pos.Rel(tr.e.cwd), Tested: []string{}}
		for _, h := range t.Of {
			if n := tr.g.Nodes[h]; n != nil {
				o.Tested = append(o.Tested, n.Path().String())
			}
		}
		if t.Off != "" {
			o.Name, o.Result, o.Off = strings.TrimSuffix(o.Test, ".tests.go"), "off", t.Off
			outs = append(outs, o)
			continue
		}
		o.Name, o.Path, o.Seconds = t.Drv.Name, t.Path().String(), tr.took[t.Hash].Round(time.Millisecond).Seconds()
		var res builder.TestResult
		switch {
		case tr.failures[t.Hash] != nil:
			o.Result = "fail"
			res = failedChecks(tr.failures[t.Hash].LogPath)
			if r := tr.booted[t.Hash]; r != nil {
				res = r.res
			}
			o.Failed = res.Failed
			if len(o.Failed) == 0 {
				o.Failed = []string{t.Drv.Name}
			}
			errs = append(errs, tr.failures[t.Hash])
		case tr.skipped[t.Hash] != nil:
			o.Result = "skip"
			errs = append(errs, tr.skipped[t.Hash])
			outs = append(outs, o)
			continue
		default:
			o.Result = "pass"
			b, err := os.ReadFile(filepath.Join(tr.st.Physical(t.Path()), builder.TestResultFile))
			if err == nil {
				err = json.Unmarshal(b, &res)
			}
			if err != nil {
				return nil, fmt.Errorf("test %s: reading its result: %w", t.Attr, err)
			}
			o.Passed, o.Skipped, o.Cached = len(res.Passed), len(res.Skipped), !ran[t.Hash]
		}
		when, err := recordTestRun(ctx, tr.st, tr.g, t, &res, o.Result == "pass", ran[t.Hash], tr.key)
		if err != nil {
			return nil, err
		}
		o.When = when.UTC().Format(time.RFC3339)
		outs = append(outs, o)
	}
	return outs, errors.Join(errs...)
}

// runTests runs the tests that have no passing result (all of them with
// rerun) and returns a line per test (testRun.outcomes).
func runTests(ctx context.Context, e *env, st *store.Store, g *eval.Graph, tests []*policy.Test, opts testRunOptions) ([]testOutcome, error) {
	tr, err := newTestRun(ctx, e, st, g, tests, opts)
	if err != nil {
		return nil, err
	}
	var prog *progress
	if opts.progress {
		prog = newProgress(e)
	}
	if err := tr.run(ctx, prog); err != nil {
		return nil, err
	}
	return tr.outcomes(ctx)
}

func sortedHashes[V any](m map[store.DrvHash]V) []store.DrvHash {
	hs := make([]store.DrvHash, 0, len(m))
	for h := range m {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b store.DrvHash) int { return bytes.Compare(a[:], b[:]) })
	return hs
}
