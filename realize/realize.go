// Package realize makes the outputs of a derivation graph valid in a
// store, and keeps them so: the scheduler (Realize: dependencies first,
// Jobs at a time, each derivation built once even across processes), one
// build in a sandbox (build.go), substitution from another store (Source,
// Substitute, Options.Substitutes), and verification of paths against the
// database and their repair by rebuilding (verify.go, repair.go). Every
// output enters the store through store.Install, the one path in.
// Verification is here and not in the store because it is repair's first
// half: both re-hash what is in place against what the database recorded,
// using only what the store lets any reader see. It never imports CUE,
// eval, lang or policy: it is handed a store.Graph.
package realize

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/store"
)

// Options control Realize.
type Options struct {
	// Jobs is how many builds run at once; 0 means the number of cores.
	Jobs int
	// FetchJobs is how many fetches (fixed-output derivations) run at
	// once, in slots of their own beside the builds' (as Nix's
	// max-substitution-jobs); 0 means as many as Jobs. A fetch of a Go
	// module is mostly unzipping and hashing, bound by the disk and the
	// cores, not the network: on this project's 2-core machine, 8 at once
	// made the toolchain's fetch (the first link of a cold realize's
	// critical path) take twice as long as 2 at once.
	FetchJobs int
	// After is work outside the graph that waits for a derivation (an
	// image test that boots it), in the units of its priority (about a
	// second of a core: a build costs 1 plus its fixed-output inputs;
	// hephc's, with 102 modules, takes two minutes): realize starts
	// what leads to it sooner.
	After map[store.DrvHash]int
	// Tests are derivations among the roots whose failure stops nothing
	// else, with or without KeepGoing: the tests a policy requires, built
	// beside what they test. Their errors are returned with the others.
	Tests map[store.DrvHash]bool
	// KeepGoing builds what it can after a failure instead of stopping.
	KeepGoing bool
	// DryRun reports what would be fetched and built and does nothing.
	DryRun bool
	// Timeout limits each build; 0 means the derivation's own
	// (store.Graph.Limits), else sandbox.DefaultTimeout.
	Timeout time.Duration
	// Getenv gives the user's environment to fixed-output builds (GOPROXY,
	// proxy and certificate settings); other builds see none of it.
	Getenv func(string) string
	// SourceDir is the configuration's directory: fetch-file
	// builds read their file (attrs.file, relative) from it.
	SourceDir string
	// Events receives progress; nil discards it. It is called from several
	// goroutines, one event at a time.
	Events func(Event)
	// Substitutes are stores a missing output is copied from, before it
	// would be built, by the first that has it (with Substitute's
	// checks); none builds everything.
	Substitutes []Source
	// Admission, if not nil, must admit each path copied from
	// Substitutes (else they are trusted to say what a path holds); a
	// path it refuses is built instead.
	Admission Admission
	// Attester, if not nil, attests each output this run builds, once it
	// is valid, and each reproduction CheckPath finds.
	Attester Attester
}

// EventKind says what happened to a derivation.
type EventKind int

const (
	// EventPlanned is sent once per derivation that must be built (its
	// output was not valid when Realize started), before any build starts.
	// Each planned derivation then gets at most one EventWaiting, at most
	// one EventStarted and one end: EventBuilt, EventSubstituted,
	// EventValid, EventFailed or EventSkipped (none if Realize stops
	// before it comes to it).
	EventPlanned EventKind = iota
	// EventStarted: this process holds the output's lock and the output
	// is still not valid: it is being substituted, fetched or built.
	EventStarted
	// EventBuilt: built (fetched, for a fixed-output derivation) by this
	// process; Size is the output's.
	EventBuilt
	// EventFailed: its build failed (Err), or taking its lock did.
	EventFailed
	// EventSkipped: a dependency failed (Err is a *DependencyError), or
	// the derivation's build was stopped because another's failed.
	EventSkipped
	// EventValid: another process made the output valid while this one
	// waited for its lock (after an EventWaiting), or just before this
	// one took it; no EventStarted precedes it.
	EventValid
	// EventSubstituted: copied from one of Options.Substitutes.
	EventSubstituted
	// EventWarning is sent at most once per warning per Realize, before
	// any build starts: Warning says what of the builds' limits this host
	// cannot enforce (sandbox.Warnings).
	EventWarning
	// EventWaiting: another process holds the output's lock (it is
	// building it); this one waits for it, then sees EventValid if the
	// other made it valid, else EventStarted.
	EventWaiting
)

// Event is progress of a realization.
type Event struct {
	Kind  EventKind
	Drv   store.DrvHash
	Path  store.Path
	Fixed bool // a fixed-output derivation (a fetch)
	Size  int64
	Err   error
	// Warning is an EventWarning's message.
	Warning string
}

// Result says what a realization did.
type Result struct {
	// Paths are the roots' outputs, in the order of the roots given.
	Paths []store.Path
	// Built and Fetched are the paths built and fetched by this run, and
	// Substituted those copied from Options.Substitutes; WouldBuild and
	// WouldFetch what a dry run would do.
	Built, Fetched, Substituted []store.Path
	// Others are the paths another process built or fetched while this
	// one waited for them (EventValid).
	Others                 []store.Path
	WouldBuild, WouldFetch []store.Path
}

// BuildError is a failed build: which derivation, where it is written,
// the end of its log and where the whole log is.
type BuildError struct {
	Drv     store.DrvHash
	Path    store.Path
	Origin  store.Origin
	LogPath string
	LogTail []string
	Err     error
}

func (e *BuildError) Error() string {
	var where string
	if e.Origin.Attr != "" {
		where = " (" + e.Origin.Attr
		if e.Origin.Pos.IsValid() {
			where += ", " + e.Origin.Pos.String()
		}
		where += ")"
	}
	return fmt.Sprintf("building %s%s: %v", e.Path, where, e.Err)
}

func (e *BuildError) Unwrap() error { return e.Err }

// DependencyError is a derivation not built because an input failed.
type DependencyError struct {
	Path   store.Path
	Failed store.Path
}

func (e *DependencyError) Error() string {
	return fmt.Sprintf("%s not built: its dependency %s failed", e.Path, e.Failed)
}

// Realize makes the outputs of roots valid in st, building (in sandboxes)
// what is missing, dependencies first, Jobs at a time. Each derivation is
// built once even when several processes realize overlapping graphs. It
// returns every build error (a BuildError each) joined. It holds st's GC
// lock shared throughout: what is valid when it starts stays so.
func Realize(ctx context.Context, st *store.Store, g *store.Graph, roots []store.DrvHash, opts Options) (*Result, error) {
	// What is valid now must stay so until the end: no GC meanwhile.
	gcLock, err := st.LockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	// A sandbox is torn down beside the next build (sandbox.Run); the
	// last ones before this returns, and under the GC lock.
	defer sandbox.WaitTeardowns()
	order, err := g.Closure(roots...)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	for _, h := range roots {
		res.Paths = append(res.Paths, g.PathOf(h))
	}
	paths := make([]store.Path, len(order))
	for i, h := range order {
		paths[i] = g.PathOf(h)
	}
	valid, err := st.ValidPaths(ctx, paths)
	if err != nil {
		return nil, err
	}
	var todo []store.DrvHash
	for _, h := range order {
		if !valid[g.PathOf(h)] {
			todo = append(todo, h)
		}
	}
	emit := opts.Events
	if emit == nil {
		emit = func(Event) {}
	}
	if opts.DryRun {
		for _, h := range todo {
			if g.Derivations[h].IsFixedOutput() {
				res.WouldFetch = append(res.WouldFetch, g.PathOf(h))
			} else {
				res.WouldBuild = append(res.WouldBuild, g.PathOf(h))
			}
		}
		return res, nil
	}
	if len(todo) == 0 {
		return res, nil
	}
	if err := st.SaveDerivations(ctx, g, todo); err != nil {
		return nil, err
	}
	for _, h := range todo {
		emit(Event{Kind: EventPlanned, Drv: h, Path: g.PathOf(h), Fixed: g.Derivations[h].IsFixedOutput()})
	}
	for _, w := range sandbox.Warnings(sandbox.DefaultLimits) {
		emit(Event{Kind: EventWarning, Warning: w})
	}

	jobs, fetchJobs := opts.Jobs, opts.FetchJobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	if fetchJobs <= 0 {
		fetchJobs = jobs
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		errs     []error
		failed   = make(map[store.DrvHash]store.Path) // derivation -> the failed path that stops it
		emitMu   sync.Mutex
		safeEmit = func(e Event) { emitMu.Lock(); defer emitMu.Unlock(); emit(e) }
	)
	// Builds and fetches have slots of their own; the longest chain of
	// work goes first (schedule.go).
	run := func(h store.DrvHash, release func()) {
		d := g.Derivations[h]
		p := g.PathOf(h)
		mu.Lock()
		var blocked store.Path
		for _, in := range d.InputNames() {
			if fp, bad := failed[d.Inputs[in]]; bad {
				blocked = fp
				break
			}
		}
		if blocked.Name != "" {
			failed[h] = blocked
			mu.Unlock()
			safeEmit(Event{Kind: EventSkipped, Drv: h, Path: p, Err: &DependencyError{Path: p, Failed: blocked}})
			return
		}
		mu.Unlock()
		// The job's slot is free once its output is built and hashed:
		// its registration (a sync and a transaction, shared with the
		// builds that end meanwhile) goes on while the next build runs.
		// Its dependents start once run returns.
		note := func(k EventKind) { safeEmit(Event{Kind: k, Drv: h, Path: p, Fixed: d.IsFixedOutput()}) }
		info, how, err := buildOne(ctx, st, g, h, opts, note, release)
		if err != nil && ctx.Err() != nil && parent.Err() == nil {
			// Stopped because another build failed: not a failure
			// of its own.
			safeEmit(Event{Kind: EventSkipped, Drv: h, Path: p, Err: err})
			return
		}
		if err != nil {
			mu.Lock()
			failed[h] = p
			errs = append(errs, err)
			mu.Unlock()
			safeEmit(Event{Kind: EventFailed, Drv: h, Path: p, Err: err})
			if !opts.KeepGoing && !opts.Tests[h] {
				cancel()
			}
			return
		}
		if how == EventValid {
			mu.Lock()
			res.Others = append(res.Others, p)
			mu.Unlock()
			safeEmit(Event{Kind: EventValid, Drv: h, Path: p, Fixed: d.IsFixedOutput(), Size: info.Size})
			return
		}
		mu.Lock()
		switch {
		case how == EventSubstituted:
			res.Substituted = append(res.Substituted, p)
		case d.IsFixedOutput():
			res.Fetched = append(res.Fetched, p)
		default:
			res.Built = append(res.Built, p)
		}
		mu.Unlock()
		safeEmit(Event{Kind: how, Drv: h, Path: p, Fixed: d.IsFixedOutput(), Size: info.Size})
	}
	newScheduler(ctx, g, todo, opts.After, jobs, fetchJobs, run).runAll(todo)
	sortPaths(res.Built)
	sortPaths(res.Fetched)
	sortPaths(res.Substituted)
	sortPaths(res.Others)
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return res, errors.Join(errs...)
	}
	// Interrupted from outside: what was built is kept, the rest is not.
	return res, parent.Err()
}

// buildOne makes h's output valid unless it became valid meanwhile:
// copied from a substitute that has it, else built. how says which
// (EventValid, EventSubstituted, EventBuilt). It holds h's lock from
// before it looks until the output is installed. note hears EventWaiting
// if another process holds the lock, and EventStarted once the lock is
// held and the output is still not valid. registering is called when a
// build has only its registration left.
func buildOne(ctx context.Context, st *store.Store, g *store.Graph, h store.DrvHash, opts Options, note func(EventKind), registering func()) (info *store.PathInfo, how EventKind, err error) {
	p := g.PathOf(h)
	lock, err := st.LockPathWaiting(ctx, p, func() { note(EventWaiting) })
	if err != nil {
		return nil, 0, err
	}
	defer lock.Unlock()
	if info, ok, err := st.QueryPathInfo(ctx, p); err != nil || ok {
		return info, EventValid, err
	}
	note(EventStarted)
	for _, src := range opts.Substitutes {
		sinfo, ok, err := src.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, 0, fmt.Errorf("substituting %s: %w", p, err)
		}
		if ok {
			info, err := substituteOne(ctx, st, src, sinfo, lock, admitting{adm: opts.Admission, d: g.Derivations[h], attr: g.Origins[h].Attr})
			var refused *NotAdmittedError
			if errors.As(err, &refused) {
				continue // not admitted: the next source, or a build
			}
			return info, EventSubstituted, err
		}
	}
	info, err = build(ctx, st, g, h, opts, lock, nil, registering)
	if err == nil && opts.Attester != nil {
		if err = opts.Attester.Built(ctx, info); err != nil {
			err = fmt.Errorf("attesting %s: %w (it is valid, not attested)", p, err)
		}
	}
	return info, EventBuilt, err
}

func sortPaths(ps []store.Path) {
	slices.SortFunc(ps, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) })
}
