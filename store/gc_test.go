package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// deletedPaths returns the paths of a GC result.
func deletedPaths(res *store.GCResult) []store.Path {
	ps := make([]store.Path, len(res.Deleted))
	for i, d := range res.Deleted {
		ps[i] = d.Path
	}
	return ps
}

func sorted(ps ...store.Path) []store.Path {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b store.Path) int {
		if a.String() < b.String() {
			return -1
		}
		if a.String() > b.String() {
			return 1
		}
		return 0
	})
	return ps
}

// checkStore fails unless every registered path verifies, the database's
// references are consistent, and (if exact) the store directory holds
// exactly the registered paths and Dir/tmp is empty.
func checkStore(t storetest.TB, st *store.Store, exact bool) {
	t.Helper()
	ctx := context.Background()
	problems, _, err := realize.Verify(ctx, st, nil, realize.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Fatalf("after GC: %v", p)
	}
	db := storetest.OpenDB(t, st.Dir)
	var dangling int
	err = db.QueryRow(`SELECT COUNT(*) FROM refs WHERE reference NOT IN (SELECT id FROM paths) OR referrer NOT IN (SELECT id FROM paths)`).Scan(&dangling)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if dangling > 0 {
		t.Fatalf("the database has %d references to or from unregistered paths", dangling)
	}
	if !exact {
		return
	}
	valid, err := st.ValidPathList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, p := range valid {
		want[p.Base()] = true
	}
	entries, err := os.ReadDir(filepath.Join(st.Dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !want[e.Name()] {
			t.Fatalf("the store holds %s, which is not registered", e.Name())
		}
	}
	if len(entries) != len(valid) {
		t.Fatalf("the store holds %d entries, the database %d paths", len(entries), len(valid))
	}
	if tmp, _ := os.ReadDir(filepath.Join(st.Dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("tmp holds %d entries after GC, e.g. %s", len(tmp), tmp[0].Name())
	}
}

func TestGCKeepsRootsAndTheirClosures(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	a := f.Step(t, "a", nil, nil, "file=x=a")
	b := f.Step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A")
	c := f.Step(t, "c", nil, nil, "single=c")
	d := f.Step(t, "d", map[string]store.DrvHash{"c": c}, map[string]string{"C": "@{c}"}, "ref=C")
	if _, err := f.Realize(t, realize.Options{}, b, d); err != nil {
		t.Fatal(err)
	}
	pa, pb, pc, pd, tool := f.G.PathOf(a), f.G.PathOf(b), f.G.PathOf(c), f.G.PathOf(d), f.G.PathOf(f.Tool)
	result := storetest.Link(t, f.St, "result", pb)
	// A stray symlink not recorded as a root protects nothing.
	if err := os.Symlink(f.St.Physical(pd), filepath.Join(t.TempDir(), "unrecorded")); err != nil {
		t.Fatal(err)
	}

	dry, err := f.St.GC(ctx, store.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := sorted(pc, pd, tool)
	if got := deletedPaths(dry); !slices.Equal(got, want) {
		t.Fatalf("dry run: got %v, want %v", got, want)
	}
	if v := storetest.Valid(t, f.St, pc, pd, tool); len(v) != 3 {
		t.Fatalf("a dry run deleted something: valid %v", v)
	}

	res, err := f.St.GC(ctx, store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := deletedPaths(res); !slices.Equal(got, want) {
		t.Fatalf("got deleted %v, want %v", got, want)
	}
	var size int64
	for _, p := range want {
		info, _, _ := f.St.QueryPathInfo(ctx, p)
		if info != nil {
			t.Errorf("%s is still registered", p)
		}
	}
	for _, dp := range dry.Deleted {
		size += dp.Size
	}
	if res.Freed != size || size == 0 {
		t.Errorf("freed %d bytes, want %d (the dry run's figure)", res.Freed, size)
	}
	if res.Live != 2 {
		t.Errorf("kept %d paths, want 2", res.Live)
	}
	for _, p := range want {
		if _, err := os.Lstat(f.St.Physical(p)); !os.IsNotExist(err) {
			t.Errorf("%s is still on disk (%v)", p, err)
		}
	}
	if v := storetest.Valid(t, f.St, pa, pb); !v[pa] || !v[pb] {
		t.Fatalf("a root or its closure was deleted: valid %v", v)
	}
	checkStore(t, f.St, true)

	// The link goes: so do b and a, and the root is forgotten.
	if err := os.Remove(result); err != nil {
		t.Fatal(err)
	}
	res, err = f.St.GC(ctx, store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := deletedPaths(res), sorted(pa, pb); !slices.Equal(got, want) {
		t.Fatalf("got deleted %v, want %v", got, want)
	}
	if !slices.Equal(res.StaleRoots, []string{result}) {
		t.Errorf("got stale roots %q, want [%s]", res.StaleRoots, result)
	}
	if roots, _ := f.St.IndirectRoots(ctx); len(roots) != 0 {
		t.Errorf("stale roots are still recorded: %q", roots)
	}
	checkStore(t, f.St, true)

	// A realize after GC builds what GC deleted.
	storetest.Link(t, f.St, "tool", tool)
	if _, err := f.St.Add(ctx, storetest.TestBuilder, "testbuilder"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Realize(t, realize.Options{}, b, d); err != nil {
		t.Fatal(err)
	}
	checkStore(t, f.St, true)
}

// TestGCRootRepointed: a link that now points elsewhere in the store
// keeps its new target, not the old one; one pointing out of the store
// keeps nothing.
func TestGCRootRepointed(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	a := f.Step(t, "a", nil, nil, "single=a")
	b := f.Step(t, "b", nil, nil, "single=b")
	if _, err := f.Realize(t, realize.Options{}, a, b); err != nil {
		t.Fatal(err)
	}
	pa, pb := f.G.PathOf(a), f.G.PathOf(b)
	l := storetest.Link(t, f.St, "result", pa)
	// Relative, through the store's directory.
	rel, err := filepath.Rel(filepath.Dir(l), f.St.Physical(pb))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(l)
	if err := os.Symlink(rel, l); err != nil {
		t.Fatal(err)
	}
	if _, err := f.St.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := storetest.Valid(t, f.St, pa, pb); v[pa] || !v[pb] {
		t.Fatalf("got valid %v, want only %s", v, pb)
	}
	os.Remove(l)
	if err := os.Symlink(t.TempDir(), l); err != nil {
		t.Fatal(err)
	}
	res, err := f.St.GC(ctx, store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := storetest.Valid(t, f.St, pb); v[pb] || len(res.StaleRoots) != 1 {
		t.Fatalf("a link out of the store kept %s (stale roots %q)", pb, res.StaleRoots)
	}
}

// addGeneration records generation n of profile with toplevel p, created
// at the given time, directly in the database.
func addGeneration(t storetest.TB, st *store.Store, profile string, n int, p store.Path, created time.Time) {
	t.Helper()
	db := storetest.OpenDB(t, st.Dir)
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO generations(profile, number, toplevel, created, config_hash, closure_size) VALUES (?, ?, ?, ?, '', 0)`,
		profile, n, p.String(), created.Unix()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO profiles(name, current) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET current = excluded.current`, profile, n); err != nil {
		t.Fatal(err)
	}
}

func setCurrent(t storetest.TB, st *store.Store, profile string, n int) {
	t.Helper()
	db := storetest.OpenDB(t, st.Dir)
	defer db.Close()
	if _, err := db.Exec(`UPDATE profiles SET current = ? WHERE name = ?`, n, profile); err != nil {
		t.Fatal(err)
	}
}

// expired is what hephc gc --keep-generations keep --older-than olderThan
// asks GC to delete.
func expired(t *testing.T, st *store.Store, keep int, olderThan time.Duration) []store.GenerationID {
	t.Helper()
	ids, err := profile.Expired(context.Background(), st, keep, olderThan)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestGCGenerationsAreRoots(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	day := 24 * time.Hour
	now := time.Unix(1_800_000_000, 0)
	f.St.Now = func() time.Time { return now }
	var gens []store.Path
	for i := range 4 {
		lib := f.Step(t, "lib"+strconv.Itoa(i), nil, nil, "file=lib=v"+strconv.Itoa(i))
		top := f.Step(t, "top"+strconv.Itoa(i), map[string]store.DrvHash{"lib": lib}, map[string]string{"LIB": "@{lib}"}, "ref=LIB")
		if _, err := f.Realize(t, realize.Options{}, top); err != nil {
			t.Fatal(err)
		}
		gens = append(gens, f.G.PathOf(top))
		// Generations 1–3 of "system", 10, 20 and 30 days old; the 4th
		// is generation 1 of "other", 40 days old.
		if i < 3 {
			addGeneration(t, f.St, "system", i+1, f.G.PathOf(top), now.Add(-time.Duration(10*(3-i))*day))
		} else {
			addGeneration(t, f.St, "other", 1, f.G.PathOf(top), now.Add(-40*day))
		}
	}
	// Rolled back: generation 1 is current.
	setCurrent(t, f.St, "system", 1)
	closure := func(top store.Path) []store.Path {
		c, err := f.St.Closure(ctx, top)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	res, err := f.St.GC(ctx, store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := deletedPaths(res), []store.Path{f.G.PathOf(f.Tool)}; !slices.Equal(got, want) || len(res.Generations) != 0 {
		t.Fatalf("got deleted %v and generations %v, want only the tool %v", got, res.Generations, want)
	}
	for _, top := range gens {
		for _, p := range closure(top) {
			if v := storetest.Valid(t, f.St, p); !v[p] {
				t.Errorf("%s of generation %s was deleted", p, top)
			}
		}
	}

	// Keep the newest one of each profile and the current one: system's
	// 2nd goes, with its closure.
	res, err = f.St.GC(ctx, store.GCOptions{Expire: expired(t, f.St, 1, 0), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.GenerationID{{"system", 2}}; !slices.Equal(res.Generations, want) {
		t.Fatalf("--keep-generations 1 --dry-run: got %v, want %v", res.Generations, want)
	}
	second := closure(gens[1])
	res, err = f.St.GC(ctx, store.GCOptions{Expire: expired(t, f.St, 1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := deletedPaths(res), sorted(second...); !slices.Equal(got, want) {
		t.Fatalf("got deleted %v, want generation 2's closure %v", got, want)
	}
	db := storetest.OpenDB(t, f.St.Dir)
	var n int
	db.QueryRow(`SELECT COUNT(*) FROM generations`).Scan(&n)
	db.Close()
	if n != 3 {
		t.Errorf("%d generations left, want 3", n)
	}

	// Older than 15 days: system's 1st is current and stays, other's only
	// one is current too; system's 3rd is 10 days old. Nothing goes.
	res, err = f.St.GC(ctx, store.GCOptions{Expire: expired(t, f.St, 0, 15*day)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Generations) != 0 || len(res.Deleted) != 0 {
		t.Fatalf("--older-than 15d: deleted generations %v, paths %v; want none", res.Generations, deletedPaths(res))
	}
	// Switch back to the 3rd: now the 1st is 30 days old and not current.
	setCurrent(t, f.St, "system", 3)
	first := closure(gens[0])
	res, err = f.St.GC(ctx, store.GCOptions{Expire: expired(t, f.St, 0, 15*day)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.GenerationID{{"system", 1}}; !slices.Equal(res.Generations, want) {
		t.Fatalf("--older-than 15d: got %v, want %v", res.Generations, want)
	}
	if got, want := deletedPaths(res), sorted(first...); !slices.Equal(got, want) {
		t.Fatalf("got deleted %v, want generation 1's closure %v", got, want)
	}
	checkStore(t, f.St, true)
}

func TestGCRemovesLeftovers(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	// What killed builds and collections leave: an unregistered output
	// (read-only, as a canonical one is), temporary directories.
	stray := filepath.Join(f.St.Dir, "store", "00000000000000000000000000000000000000000000000000000-stray")
	for _, d := range []string{stray + "/sub", filepath.Join(f.St.Dir, "tmp", "build-x", "store"), filepath.Join(f.St.Dir, "tmp", "repair-123", "x")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(stray+"/sub/file", []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := fstree.Canonicalize(stray); err != nil {
		t.Fatal(err)
	}
	tool := f.G.PathOf(f.Tool)
	storetest.Link(t, f.St, "tool", tool)
	res, err := f.St.GC(ctx, store.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Leftovers) != 3 {
		t.Fatalf("got leftovers %q, want 3", res.Leftovers)
	}
	if _, err := os.Lstat(stray); err != nil {
		t.Fatalf("a dry run removed a leftover: %v", err)
	}
	if _, err := f.St.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stray); !os.IsNotExist(err) {
		t.Fatalf("the unregistered %s is still there (%v)", stray, err)
	}
	if v := storetest.Valid(t, f.St, tool); !v[tool] {
		t.Fatalf("the rooted tool was deleted")
	}
	checkStore(t, f.St, true)
}

const gcWorkerEnv = "HEPHC_TEST_GC_WORKER"

// A GC worker needs neither the sandbox nor the test builder: it runs
// before TestMain.
func init() {
	if os.Getenv(gcWorkerEnv) != "" {
		os.Exit(gcWorker())
	}
}

// gcWorker is the process TestGCSurvivesSIGKILL kills.
func gcWorker() int {
	st, err := store.Open(os.Getenv(gcWorkerEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// In the background, as the CLI collects: killed while removing
	// files with GC returned, too.
	res, err := st.GC(context.Background(), store.GCOptions{Background: true})
	if err == nil {
		err = res.Wait()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestGCInBackground: GC returns with the garbage unregistered while its
// files are still being removed, and the GC lock stays held until they
// are gone: nothing can realize (take it shared) in between.
func TestGCInBackground(t *testing.T) {
	dir := tempStoreDir(t)
	syn := synthStore(t, dir, 3000, 2000, 7)
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.GC(context.Background(), store.GCOptions{Background: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != len(syn.garbage) || res.Live != len(syn.live) {
		t.Fatalf("deleted %d and kept %d paths, want %d and %d", len(res.Deleted), res.Live, len(syn.garbage), len(syn.live))
	}
	if v := storetest.Valid(t, st, syn.garbage...); len(v) != 0 {
		t.Fatalf("%d garbage paths are still valid once GC returned", len(v))
	}
	lock, err := st.LockGC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range syn.garbage {
		if _, err := os.Lstat(st.Physical(p)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s is still there once the GC lock is free: %v", p, err)
		}
	}
	lock.Unlock()
	if err := res.Wait(); err != nil {
		t.Fatal(err)
	}
	checkStore(t, st, true)
}

// TestGCSurvivesSIGKILL kills a collecting process at 30 different
// moments: after each kill every registered path verifies, the database
// refers only to registered paths, no live path is gone, and the next GC
// leaves a store that holds exactly its registered paths.
func TestGCSurvivesSIGKILL(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const n, garbage = 1200, 700
	var (
		dir string
		syn *synthetic
		st  *store.Store
	)
	fresh := func() {
		if st != nil {
			st.Close()
			fstree.RemoveTree(dir)
		}
		dir = tempStoreDir(t)
		syn = synthStore(t, dir, n, garbage, uint64(time.Now().UnixNano()))
		// Some leftovers too.
		os.MkdirAll(filepath.Join(dir, "tmp", "build-left", "x"), 0o755)
		os.MkdirAll(filepath.Join(dir, "store", "00000000000000000000000000000000000000000000000000000-left", "x"), 0o755)
		if st, err = store.Open(dir); err != nil {
			t.Fatal(err)
		}
	}
	fresh()
	defer func() { st.Close() }()
	// How long an undisturbed GC takes, to spread the kills over it.
	start := time.Now()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), gcWorkerEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gc worker: %v\n%s", err, out)
	}
	span := time.Since(start)
	checkStore(t, st, true)
	t.Logf("an undisturbed GC of %d paths, %d garbage, took %v (process included)", n, garbage, span)

	const runs = 30
	for i := 0; i < runs; i++ {
		if i%5 == 0 {
			fresh()
		}
		delay := span * time.Duration(i%5*runs/5+i/5) / runs
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), gcWorkerEnv+"="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		checkStore(t, st, false)
		if v := storetest.Valid(t, st, syn.live...); len(v) != len(syn.live) {
			t.Fatalf("after a kill at %v: %d of %d live paths are left", delay, len(v), len(syn.live))
		}
		if i%5 == 4 {
			res, err := st.GC(context.Background(), store.GCOptions{})
			if err != nil {
				t.Fatalf("GC after a kill at %v: %v", delay, err)
			}
			if res.Live != len(syn.live) {
				t.Fatalf("GC after a kill at %v kept %d paths, want %d", delay, res.Live, len(syn.live))
			}
			checkStore(t, st, true)
		}
	}
}

// TestGCAsOrdinaryUser collects a store of read-only trees as uid 65534
// (nobody), which needs write permission on a directory to empty it.
func TestGCAsOrdinaryUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the tests already run as an ordinary user: every GC test covers this")
	}
	dir := tempStoreDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(dir, "store")
	syn := synthStore(t, st, 300, 200, 7)
	os.MkdirAll(filepath.Join(st, "tmp", "build-left", "x"), 0o555)
	err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, 65534, 65534)
	})
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "store.test")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = []string{gcWorkerEnv + "=" + st, "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gc as nobody: %v\n%s", err, out)
	}
	s, err := store.Open(st)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkStore(t, s, true)
	if v := storetest.Valid(t, s, syn.live...); len(v) != len(syn.live) {
		t.Fatalf("%d of %d live paths are left", len(v), len(syn.live))
	}
	if v := storetest.Valid(t, s, syn.garbage...); len(v) != 0 {
		t.Fatalf("%d of %d garbage paths are left", len(v), len(syn.garbage))
	}
}

// TestGCWhileRealizing runs GC over and over while another store handle
// realizes, many times: every realization succeeds (nothing it needed
// disappeared), and what it rooted survives.
func TestGCWhileRealizing(t *testing.T) {
	dir := t.TempDir()
	f := storetest.New(t, dir)
	ctx := context.Background()
	// base is valid and unrooted before each realization: GC would
	// delete it if it could while a build that needs it runs.
	base := f.Step(t, "base", nil, nil, "file=lib=base")
	// The tool is rooted: fetching it again needs a source directory.
	storetest.Link(t, f.St, "tool", f.G.PathOf(f.Tool))
	if _, err := f.Realize(t, realize.Options{}, base); err != nil {
		t.Fatal(err)
	}
	other, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const rounds = 12
	var (
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		gcs   int
		gcErr error
		tops  []store.Path
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := other.GC(ctx, store.GCOptions{}); err != nil {
				gcErr = err
				return
			}
			gcs++
			time.Sleep(time.Duration(gcs%7) * time.Millisecond)
		}
	}()
	for i := range rounds {
		mid := f.Step(t, "mid"+strconv.Itoa(i), map[string]store.DrvHash{"base": base}, map[string]string{"BASE": "@{base}"},
			"sleep=30", "cat=@{base}/lib", "ref=BASE")
		top := f.Step(t, "top"+strconv.Itoa(i), map[string]store.DrvHash{"mid": mid, "base": base}, map[string]string{"MID": "@{mid}"},
			"cat=@{base}/lib", "ref=MID")
		// As realize does: the result is linked before the GC lock goes.
		lock, err := f.St.LockGC(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := realize.Realize(ctx, f.St, f.G, []store.DrvHash{top}, realize.Options{}); err != nil {
			lock.Unlock()
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: %v", i, err)
		}
		storetest.Link(t, f.St, "result", f.G.PathOf(top))
		lock.Unlock()
		tops = append(tops, f.G.PathOf(top))
		time.Sleep(time.Duration(i%3) * 10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if gcErr != nil {
		t.Fatal(gcErr)
	}
	t.Logf("%d collections ran meanwhile", gcs)
	if gcs < rounds/2 {
		t.Errorf("only %d collections ran during %d realizations", gcs, rounds)
	}
	for _, p := range tops {
		c, err := f.St.Closure(ctx, p)
		if err != nil {
			t.Fatalf("a rooted result lost part of its closure: %v", err)
		}
		if len(c) != 3 {
			t.Errorf("closure of %s: got %v, want it, mid and base", p, c)
		}
	}
	if _, err := f.St.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	checkStore(t, f.St, true)
}
