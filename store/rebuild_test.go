package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// storeState is what a rebuilt database must know as the lost one did.
type storeState struct {
	Paths       []store.PathInfo
	Generations []store.GenerationRecord
	Roots       []string
	Garbage     []store.Path             // what GC would delete
	Derivations map[store.DrvHash]string // canonical encoding and origin
}

func stateOf(t *testing.T, st *store.Store, drvs ...store.DrvHash) storeState {
	t.Helper()
	ctx := context.Background()
	var s storeState
	ps, err := st.ValidPathList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		info, _, err := st.QueryPathInfo(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		s.Paths = append(s.Paths, *info)
	}
	if s.Generations, err = st.GenerationRecords(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if s.Roots, err = st.IndirectRoots(ctx); err != nil {
		t.Fatal(err)
	}
	gc, err := st.GC(ctx, store.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Garbage = deletedPaths(gc)
	s.Derivations = map[store.DrvHash]string{}
	for _, h := range drvs {
		sd, ok, err := st.LoadDerivation(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		s.Derivations[h] = "none"
		if ok {
			c, err := sd.Derivation.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			s.Derivations[h] = fmt.Sprintf("%s at %s %s", c, sd.Attr, sd.Pos)
		}
	}
	return s
}

func removeDB(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{store.DBFile, store.DBFile + "-wal", store.DBFile + "-shm"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// wantDatabaseError fails unless err is a *DatabaseError naming the
// command that rebuilds the database.
func wantDatabaseError(t *testing.T, err error, problem string) {
	t.Helper()
	var de *store.DatabaseError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), store.RebuildCommand) || !strings.Contains(err.Error(), problem) {
		t.Fatalf("got %v, want a database error saying %q and naming %q", err, problem, store.RebuildCommand)
	}
}

// realizedStore realizes a small graph in a new store: b refers to a,
// two generations of profile sys (the first current again) and a
// ./result root to other; drvs are the derivations and roots the roots.
func realizedStore(t *testing.T) (f *storetest.Fixture, dir string, roots []store.DrvHash) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	f = storetest.New(t, dir)
	a := f.Step(t, "a", nil, nil, "file=data=hello from a")
	b := f.Step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A", "file=more=b")
	other := f.Step(t, "other", nil, nil, "single=other")
	roots = []store.DrvHash{b, other}
	if _, err := f.Realize(t, realize.Options{}, roots...); err != nil {
		t.Fatal(err)
	}
	if _, _, err := profile.Record(ctx, f.St, "sys", map[string]store.Path{"b": f.G.PathOf(b)}, "hash1", "config 1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := profile.Record(ctx, f.St, "sys", map[string]store.Path{"a": f.G.PathOf(a)}, "hash2", "config 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := profile.SetCurrent(ctx, f.St, "sys", 1); err != nil {
		t.Fatal(err)
	}
	storetest.Link(t, f.St, "result", f.G.PathOf(other))
	return f, dir, roots
}

// TestRebuildDBAfterLoss deletes the database of a store holding a
// graph, generations and a root: opening it is an error naming the
// rebuild; the rebuilt database knows every path, derivation, generation
// and root as the lost one did; the store verifies; realizing again
// builds nothing; GC would delete exactly what it would have before.
func TestRebuildDBAfterLoss(t *testing.T) {
	ctx := context.Background()
	f, dir, roots := realizedStore(t)
	var drvs []store.DrvHash
	for h := range f.G.Derivations {
		drvs = append(drvs, h)
	}
	before := stateOf(t, f.St, drvs...)
	if len(before.Paths) != 6 || len(before.Generations) != 2 || len(before.Roots) != 1 || len(before.Garbage) != 1 {
		t.Fatalf("before: %d paths, %d generations, %d roots, garbage %v; want 6, 2, 1 and the tool", len(before.Paths), len(before.Generations), len(before.Roots), before.Garbage)
	}
	f.St.Close()

	removeDB(t, dir)
	_, err := store.Open(dir)
	wantDatabaseError(t, err, "is missing")
	if exists(filepath.Join(dir, store.DBFile)) {
		t.Fatalf("opening made a new database")
	}
	if err := os.WriteFile(filepath.Join(dir, store.DBFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(dir)
	wantDatabaseError(t, err, "is empty")

	res, err := store.RebuildDB(ctx, dir, store.RebuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Registered) != 6 || len(res.Refused) != 0 || len(res.Unrecorded) != 0 || res.Generations != 2 || res.Roots != 1 || res.Derivations != len(drvs)-1 {
		t.Fatalf("rebuilt: %+v; want 6 paths, %d derivations (the tool was added), 2 generations, 1 root, nothing refused", res, len(drvs)-1)
	}
	if fi, err := os.Stat(res.Aside); err != nil || fi.Size() != 0 {
		t.Errorf("the empty database was not kept aside at %q (%v)", res.Aside, err)
	}
	st := openStore(t, dir)
	after := stateOf(t, st, drvs...)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("the rebuilt database differs:\nbefore %+v\nafter  %+v", before, after)
	}
	if problems, _, err := realize.Verify(ctx, st, nil, realize.VerifyOptions{}); err != nil || len(problems) != 0 {
		t.Fatalf("verify after the rebuild: %v %v", problems, err)
	}
	r, err := realize.Realize(ctx, st, f.G, roots, realize.Options{})
	if err != nil || len(r.Built)+len(r.Fetched) != 0 {
		t.Fatalf("realizing after the rebuild built %v, fetched %v (%v); want nothing", r.Built, r.Fetched, err)
	}
	gens, err := profile.List(ctx, st, "sys")
	if err != nil || len(gens) != 2 || !gens[0].Current || gens[1].Current {
		t.Fatalf("generations after the rebuild: %v (%v); want 2, the first current", gens, err)
	}
	// A rebuilt path can be repaired: its derivation is known again.
	pa := f.G.PathOf(f.G.Derivations[roots[0]].Inputs["a"])
	flipByte(t, filepath.Join(st.Physical(pa), "data"))
	if err := realize.RepairPath(ctx, st, pa, realize.Options{}); err != nil {
		t.Fatal(err)
	}
	gc, err := st.GC(ctx, store.GCOptions{})
	if err != nil || !reflect.DeepEqual(deletedPaths(gc), before.Garbage) {
		t.Fatalf("GC after the rebuild deleted %v (%v), want %v", deletedPaths(gc), err, before.Garbage)
	}
	checkStore(t, st, true)
}

// flipByte flips the first byte of a stored (read-only) file.
func flipByte(t *testing.T, file string) {
	t.Helper()
	os.Chmod(file, 0o644)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if err := os.WriteFile(file, b, 0o444); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o444)
}

// TestRebuildDBRefusesTornPaths: a path whose content no longer hashes
// to its record (a tree torn by a power loss) is not registered again,
// nor what refers to it; the rest is; the store verifies and GC removes
// the torn tree.
func TestRebuildDBRefusesTornPaths(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	torn, referrer, whole := testPath("torn"), testPath("referrer"), testPath("whole")
	for _, in := range []store.InstallRequest{
		{Path: torn, Source: stage(t, st, map[string]string{"big": strings.Repeat("x", 10000)})},
		{Path: referrer, Source: stage(t, st, map[string]string{"ref": torn.String()}), References: []store.Path{torn}},
		{Path: whole, Source: stage(t, st, map[string]string{"f": "whole"})},
	} {
		if _, err := st.Install(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	// What an unsynced write-back leaves: the file cut short.
	big := filepath.Join(dir, "store", torn.Base(), "big")
	os.Chmod(big, 0o644)
	if err := os.Truncate(big, 4096); err != nil {
		t.Fatal(err)
	}
	removeDB(t, dir)
	res, err := store.RebuildDB(ctx, dir, store.RebuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Registered) != 1 || res.Registered[0] != whole || len(res.Refused) != 2 {
		t.Fatalf("registered %v, refused %v; want only %s registered, %s and %s refused", res.Registered, res.Refused, whole, torn, referrer)
	}
	for _, p := range res.Refused {
		t.Log(p)
	}
	if !strings.Contains(res.Refused[0].String()+res.Refused[1].String(), "torn or changed") {
		t.Errorf("the refusals do not say the content is torn: %v", res.Refused)
	}
	st = openStore(t, dir)
	if problems, _, err := realize.Verify(ctx, st, nil, realize.VerifyOptions{}); err != nil || len(problems) != 0 {
		t.Fatalf("verify after the rebuild: %v %v", problems, err)
	}
	if _, err := st.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if exists(st.Physical(torn)) {
		t.Errorf("GC left the torn %s", torn)
	}
	checkStore(t, st, true)
}

// TestRebuildDBAfterCorruption overwrites a page of the database with
// garbage: commands fail with an error naming the rebuild, which restores
// every path and keeps the corrupt file aside.
func TestRebuildDBAfterCorruption(t *testing.T) {
	ctx := context.Background()
	for _, page := range []string{"paths", "header"} {
		t.Run(page, func(t *testing.T) {
			f, dir, _ := realizedStore(t)
			before := stateOf(t, f.St)
			db := storetest.OpenDB(t, dir)
			var root, size int64
			if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow(`SELECT rootpage FROM sqlite_master WHERE name = 'paths'`).Scan(&root); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow(`PRAGMA page_size`).Scan(&size); err != nil {
				t.Fatal(err)
			}
			db.Close()
			f.St.Close()
			if page == "header" {
				root = 1
			}
			garbage := []byte(strings.Repeat("garbage!", int(size)/8))
			file, err := os.OpenFile(filepath.Join(dir, store.DBFile), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := file.WriteAt(garbage, (root-1)*size); err != nil {
				t.Fatal(err)
			}
			file.Close()

			st, err := store.Open(dir)
			if err == nil {
				_, _, err = st.QueryPathInfo(ctx, before.Paths[0].Path)
				st.Close()
			}
			wantDatabaseError(t, err, "is corrupt")
			t.Log(err)

			res, err := store.RebuildDB(ctx, dir, store.RebuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Registered) != len(before.Paths) || len(res.Refused) != 0 {
				t.Fatalf("registered %d paths, refused %v; want %d, none", len(res.Registered), res.Refused, len(before.Paths))
			}
			if b, err := os.ReadFile(res.Aside); err != nil || !strings.Contains(string(b), "garbage!") {
				t.Fatalf("the corrupt database is not kept aside at %q (%v)", res.Aside, err)
			}
			st = openStore(t, dir)
			if after := stateOf(t, st); !reflect.DeepEqual(before, after) {
				t.Fatalf("the rebuilt database differs:\nbefore %+v\nafter  %+v", before, after)
			}
			if problems, _, err := realize.Verify(ctx, st, nil, realize.VerifyOptions{}); err != nil || len(problems) != 0 {
				t.Fatalf("verify after the rebuild: %v %v", problems, err)
			}
		})
	}
}

// TestRebuildDBRefusesAHealthyDatabase: nothing is lost by mistake.
func TestRebuildDBRefusesAHealthyDatabase(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	if _, err := st.Install(context.Background(), store.InstallRequest{Path: testPath("p"), Source: stage(t, st, map[string]string{"f": "x"})}); err != nil {
		t.Fatal(err)
	}
	_, err := store.RebuildDB(context.Background(), dir, store.RebuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "quick_check") {
		t.Fatalf("got %v, want a refusal", err)
	}
	if v := storetest.Valid(t, st, testPath("p")); !v[testPath("p")] {
		t.Fatalf("the refused rebuild changed the database")
	}
}

// TestOpenRefusesAnEmptyDatabase: a database that holds nothing (made
// anew by an older hephc, say) beside a store that holds paths is an
// error, never an empty store.
func TestOpenRefusesAnEmptyDatabase(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	if _, err := st.Install(context.Background(), store.InstallRequest{Path: testPath("p"), Source: stage(t, st, map[string]string{"f": "x"})}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	removeDB(t, dir)
	db := storetest.OpenDB(t, dir)
	_, err := db.Exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema', '1');
		CREATE TABLE paths (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, content_hash TEXT NOT NULL, size INTEGER NOT NULL, files INTEGER NOT NULL, deriver TEXT NOT NULL, registered INTEGER NOT NULL, ca TEXT NOT NULL DEFAULT '')`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(dir)
	wantDatabaseError(t, err, "is empty")
}
