package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/zeebo/blake3"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "realize",
		args:    "[-A ATTR] [--dry-run] [-j N] [--fetch-jobs N] [--keep-going] [-o LINK] [FILE.cue…|DIR]",
		summary: "build what the configuration needs into the store, in sandboxes, and print the output paths",
		flags: func(fs *pflag.FlagSet) {
			fs.StringP("attr", "A", "", "realize only this attribute, e.g. images.workstation")
			fs.Bool("dry-run", false, "say what would be fetched and built; do nothing")
			fs.IntP("jobs", "j", runtime.NumCPU(), "builds to run at once")
			fs.Int("fetch-jobs", 0, "fetches to run at once, beside the builds (0: as many as -j; more on a slow network)")
			fs.BoolP("keep-going", "k", false, "after a failure, go on with what does not depend on it")
			fs.StringP("out-link", "o", "result", "symlink to the main output (when there is one; else LINK-NAME to each system, e.g. result-workstation)")
			fs.Bool("no-link", false, "do not create the result symlinks")
			fs.Duration("timeout", sandbox.DefaultTimeout, "time limit of each build")
			fs.Bool("check", false, "rebuild the selected derivations (refetch fixed-output ones) and compare with the store's, never replacing them; exit 1 if one differs")
			policyFlag(fs)
			substituteFlags(fs) // substitute.go
			channelFlags(fs)    // channels.go: --server, --channel
			fs.String("profile", "system", "record the realization as a generation of this profile (always when given; by default when a root is a system image)")
		},
		run: runRealize,
	})
}

func runRealize(e *env, fs *pflag.FlagSet, args []string) error {
	if check, _ := fs.GetBool("check"); check {
		return runRealizeCheck(e, fs, args) // realizecheck.go
	}
	attr, _ := fs.GetString("attr")
	dry, _ := fs.GetBool("dry-run")
	keepGoing, _ := fs.GetBool("keep-going")
	link, _ := fs.GetString("out-link")
	noLink, _ := fs.GetBool("no-link")
	profile, _ := fs.GetString("profile")
	recordAlways := fs.Changed("profile")
	r, err := startRealizing(e, fs, args)
	if err != nil {
		return err
	}
	defer r.release()
	g, st, sg, roots, ctx := r.g, r.st, r.sg, r.roots, r.ctx
	att, err := localAttester(e, st, dry) // attest.go
	if err != nil {
		return err
	}
	// The tests the policy requires (test.go) run beside the builds,
	// each as soon as what it tests is built, unless a binary cache has
	// its result; a server's channel holds only what passed its tests.
	server, _ := fs.GetString("server")
	var tests []*policy.Test
	if !dry && server == "" {
		if tests, err = policyTests(g); err != nil {
			return err
		}
	}
	if err := substitute(ctx, e, fs, st, g, sg, roots, tests, args); err != nil {
		return err
	}
	var tr *testRun
	if len(tests) > 0 {
		if tr, err = requiredTests(ctx, e, st, g, tests, testRunOptions{jobs: r.jobs, timeout: r.timeout, sourceDir: configDir(e, args)}); err != nil {
			return err
		}
	}
	prog := newProgress(e)
	opts := realize.Options{
		Jobs: r.jobs, FetchJobs: r.fetches, KeepGoing: keepGoing, DryRun: dry, Timeout: r.timeout,
		Getenv: e.getenv, Events: prog.event, SourceDir: configDir(e, args), Attester: att,
	}
	all := roots
	if tr != nil {
		sg, all = tr.sg, append(slices.Clone(roots), tr.roots()...)
		opts.Tests, opts.After, tr.say = tr.goTestSet(), tr.after(), prog.say
		opts.Events = func(ev realize.Event) { tr.event(ev); prog.event(ev) }
		fmt.Fprintf(e.stderr, "running %s the policy requires, each as soon as what it tests is built\n", plural(len(tr.tests), "test"))
		if err := tr.bootValid(ctx); err != nil {
			return err
		}
	}
	res, err := realize.Realize(ctx, st, sg, all, opts)
	prog.finish()
	if tr != nil {
		err = tr.settle(err)
	}
	if err != nil {
		return err
	}
	res.Paths = res.Paths[:len(roots)]
	var forTests *realize.Result // what realize did for the tests alone
	if tr != nil {
		if res, forTests, err = splitResult(res, sg, roots); err != nil {
			return err
		}
	}
	// The sizes of the images that are built (all of them, unless this is
	// a dry run): an image larger than the policy allows is neither
	// recorded as a generation nor linked, nor printed.
	sizeErr := checkSizes(st, g)
	if !dry && sizeErr == nil && server == "" {
		if err := requireTests(ctx, e, st, g, tr, tests); err != nil {
			return err
		}
	}
	if dry {
		if sizeErr != nil {
			return sizeErr
		}
		return printDryRun(e, res)
	}
	if forTests != nil && len(forTests.Built)+len(forTests.Fetched)+len(forTests.Substituted) > 0 {
		fmt.Fprintf(e.stderr, "%s; for the tests the policy requires: fetched %d, built %d\n", summary(res), len(forTests.Fetched)+len(forTests.Substituted), len(forTests.Built))
	} else {
		fmt.Fprintln(e.stderr, summary(res))
	}
	if sizeErr != nil {
		return sizeErr
	}
	for _, p := range res.Paths {
		fmt.Fprintln(e.stdout, p)
	}
	rootPaths := make(map[string]store.Path, len(g.Roots))
	for a, h := range g.Roots {
		rootPaths[a] = g.Nodes[h].Path()
	}
	systems := systemsOf(rootPaths, st.Physical) // systems.go
	if recordAlways || len(systems) > 0 {
		if err := recordGeneration(e, st, rootPaths, profile, args); err != nil {
			return err
		}
	}
	links := map[string]store.Path{}
	if !noLink && link != "" {
		links = resultLinks(g, attr, link, systems)
	}
	for _, l := range slices.Sorted(maps.Keys(links)) {
		if err := st.LinkRoot(context.Background(), absPath(e.cwd, l), links[l]); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "linked %s to %s\n", l, st.Physical(links[l]))
	}
	if len(links) == 0 && st.Dir != "/heph" {
		fmt.Fprintf(e.stderr, "(store paths /heph/store/… are in %s on this machine)\n", filepath.Join(st.Dir, "store"))
	}
	return nil
}

// resultLinks are the links realize makes: link to the main output when
// there is one, else link-NAME to each system (result-workstation).
func resultLinks(g *eval.Graph, attr, link string, systems []system) map[string]store.Path {
	if main, ok := mainOutput(g, attr); ok {
		return map[string]store.Path{link: g.Nodes[main].Path()}
	}
	links := map[string]store.Path{}
	for _, s := range systems {
		links[link+"-"+s.name] = s.path
	}
	return links
}

// realizing is what realize and realize --check share: the evaluated
// graph and the graph as the store sees it, the open store, a context
// that SIGINT and SIGTERM cancel, and the store's GC lock held shared from
// before the builds until the outputs are rooted (a generation, ./result).
type realizing struct {
	g       *eval.Graph
	st      *store.Store
	sg      *store.Graph
	roots   []store.DrvHash
	ctx     context.Context
	jobs    int
	fetches int           // fetch jobs
	timeout time.Duration // 0: each derivation's limits.timeout, else the default
	release func()        // the GC lock, the signal handler, the store
}

// startRealizing reads the flags realize and realize --check share,
// evaluates the configuration (enforcing its policies), opens the store
// and takes its GC lock shared.
func startRealizing(e *env, fs *pflag.FlagSet, args []string) (*realizing, error) {
	attr, _ := fs.GetString("attr")
	jobs, _ := fs.GetInt("jobs")
	timeout, _ := fs.GetDuration("timeout")
	if !fs.Changed("timeout") {
		timeout = 0
	}
	if jobs < 1 {
		return nil, usagef("-j wants at least 1, got %d", jobs)
	}
	fetches, _ := fs.GetInt("fetch-jobs")
	if fetches < 0 {
		return nil, usagef("--fetch-jobs wants 0 (as many as -j) or more, got %d", fetches)
	}
	policyFiles, _ := fs.GetStringArray("policy")
	g, _, err := evaluate(e, evaluation{attr: attr, args: args, policy: true, policyFiles: policyFiles, useCache: true})
	if err != nil {
		return nil, err
	}
	st, err := openStore(e)
	if err != nil {
		return nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	gcLock, err := st.LockGC(ctx, false)
	if err != nil {
		stop()
		st.Close()
		return nil, err
	}
	return &realizing{
		g: g, st: st, sg: pipeline.StoreGraph(g), roots: pipeline.RootHashes(g), ctx: ctx,
		jobs: jobs, fetches: fetches, timeout: timeout,
		release: func() {
			gcLock.Unlock()
			stop()
			st.Close()
		},
	}, nil
}

// splitResult splits what a realization did into what the roots' closure
// needed and the rest (what only the tests riding along needed).
func splitResult(res *realize.Result, g *store.Graph, roots []store.DrvHash) (*realize.Result, *realize.Result, error) {
	order, err := g.Closure(roots...)
	if err != nil {
		return nil, nil, err
	}
	mine := make(map[store.Path]bool, len(order))
	for _, h := range order {
		mine[g.PathOf(h)] = true
	}
	split := func(ps []store.Path) (in, out []store.Path) {
		for _, p := range ps {
			if mine[p] {
				in = append(in, p)
			} else {
				out = append(out, p)
			}
		}
		return in, out
	}
	main, rest := &realize.Result{Paths: res.Paths}, &realize.Result{}
	main.Built, rest.Built = split(res.Built)
	main.Fetched, rest.Fetched = split(res.Fetched)
	main.Substituted, rest.Substituted = split(res.Substituted)
	main.Others, rest.Others = split(res.Others)
	return main, rest, nil
}

// summary says what a realization did: what it built and fetched, and
// what another process built (or fetched) while it waited.
func summary(res *realize.Result) string {
	did := len(res.Built)+len(res.Fetched) > 0
	others := plural(len(res.Others), "path") + " built by another process"
	switch {
	case did && len(res.Others) > 0:
		return fmt.Sprintf("fetched %d, built %d; %s", len(res.Fetched), len(res.Built), others)
	case did:
		return fmt.Sprintf("fetched %d, built %d", len(res.Fetched), len(res.Built))
	case len(res.Others) > 0:
		return "nothing left to do: " + others
	}
	return fmt.Sprintf("nothing to do: all %d paths are valid", len(res.Paths))
}

func printDryRun(e *env, res *realize.Result) error {
	if len(res.WouldFetch)+len(res.WouldBuild) == 0 {
		fmt.Fprintf(e.stdout, "nothing to do: all %d paths are valid\n", len(res.Paths))
		return nil
	}
	if len(res.WouldFetch) > 0 {
		fmt.Fprintf(e.stdout, "would fetch %d paths:\n", len(res.WouldFetch))
		for _, p := range res.WouldFetch {
			fmt.Fprintf(e.stdout, "  %s\n", p)
		}
	}
	if len(res.WouldBuild) > 0 {
		fmt.Fprintf(e.stdout, "would build %d paths:\n", len(res.WouldBuild))
		for _, p := range res.WouldBuild {
			fmt.Fprintf(e.stdout, "  %s\n", p)
		}
	}
	return nil
}

// mainOutput is what ./result points at: the one root that is not a
// fetch, when there is exactly one, or the one root of -A.
func mainOutput(g *eval.Graph, attr string) (store.DrvHash, bool) {
	var cands []store.DrvHash
	for _, h := range pipeline.RootHashes(g) {
		if attr != "" || !g.Nodes[h].Drv.IsFixedOutput() {
			cands = append(cands, h)
		}
	}
	if len(cands) == 1 {
		return cands[0], true
	}
	return store.DrvHash{}, false
}

func openStore(e *env) (*store.Store, error) {
	dir, err := storeDir(e)
	if err != nil {
		return nil, err
	}
	return store.Open(dir)
}

// storeDir is the store's directory: --store, HEPHC_STORE or the default.
func storeDir(e *env) (string, error) {
	dir := e.store
	if dir == "" {
		var err error
		if dir, err = store.DefaultDir(e.getenv); err != nil {
			return "", err
		}
	}
	return absPath(e.cwd, dir), nil
}

// configDir is the directory of the configuration args name.
func configDir(e *env, args []string) string {
	if len(args) == 0 {
		return e.cwd
	}
	p := absPath(e.cwd, args[0])
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return p
	}
	return filepath.Dir(p)
}

// recordGeneration records the realized roots as a new generation, with
// the configuration's directory and files.
func recordGeneration(e *env, st *store.Store, roots map[string]store.Path, profileName string, args []string) error {
	hash, files := configHash(e, args)
	from := profile.Origin{Hash: hash, Config: files, Dir: configDir(e, args), Files: []string{}}
	for _, f := range configFiles(e, args) {
		from.Files = append(from.Files, srcpos.RelPath(from.Dir, f))
	}
	gen, recorded, err := profile.RecordFrom(context.Background(), st, profileName, roots, from)
	if err != nil {
		return err
	}
	if !recorded {
		fmt.Fprintf(e.stderr, "generation %d of profile %s is current already\n", gen.Number, profileName)
		return nil
	}
	fmt.Fprintf(e.stderr, "recorded generation %d of profile %s\n", gen.Number, profileName)
	return nil
}

// configFiles are the configuration's .cue files, absolute, sorted.
func configFiles(e *env, args []string) []string {
	var files []string
	if len(args) == 0 {
		args = []string{"."}
	}
	for _, a := range args {
		p := absPath(e.cwd, a)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			m, _ := filepath.Glob(filepath.Join(p, "*.cue"))
			files = append(files, m...)
		} else {
			files = append(files, p)
		}
	}
	sort.Strings(files)
	return files
}

// configHash is the blake3 of the configuration's .cue files (names and
// contents, sorted), and the files as a list for people.
func configHash(e *env, args []string) (string, string) {
	h := blake3.New()
	var names []string
	for _, f := range configFiles(e, args) {
		b, _ := os.ReadFile(f)
		rel := srcpos.RelPath(e.cwd, f)
		names = append(names, rel)
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(b))
		h.Write(b)
	}
	var sum [32]byte
	return fmt.Sprintf("blake3:%x", h.Sum(sum[:0])), strings.Join(names, " ")
}
