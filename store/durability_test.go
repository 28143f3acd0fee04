package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/store"
)

// testPath is a store path for content the test installs.
func testPath(name string) store.Path {
	return store.Path{Hash: store.HashDerivation([]byte(name)), Name: name}
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestInstallSyncsBeforeRegistering records what is on disk and in the
// database at each sync Install makes: the content and its record are in
// place and the path is not registered yet. So the content, its
// directory entries and the record are durable before the transaction
// that registers the path can be.
func TestInstallSyncsBeforeRegistering(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	dep, p := testPath("dep"), testPath("p")
	type seen struct {
		content, record, valid bool
	}
	var at []seen
	watch := p
	st.SyncFS = func() error {
		v, err := st.ValidPaths(ctx, []store.Path{watch})
		if err != nil {
			t.Error(err)
		}
		at = append(at, seen{exists(filepath.Join(st.Physical(watch), "ref")), exists(filepath.Join(st.Dir, "info", watch.Hash.String()+".json")), v[watch]})
		return nil
	}
	watch = dep
	if _, err := st.Install(ctx, store.InstallRequest{Path: dep, Source: stage(t, st, map[string]string{"ref": "x"})}); err != nil {
		t.Fatal(err)
	}
	watch = p
	if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"ref": dep.String()}), References: []store.Path{dep}}); err != nil {
		t.Fatal(err)
	}
	if len(at) != 2 {
		t.Fatalf("got %d syncs for two installs, want 2: %v", len(at), at)
	}
	for i, s := range at {
		if !s.content || !s.record || s.valid {
			t.Errorf("sync %d saw content %v, record %v, registered %v; want the content and its record in place, not registered yet", i, s.content, s.record, s.valid)
		}
	}
	if v := storetest.Valid(t, st, dep, p); !v[dep] || !v[p] {
		t.Fatalf("after the installs: valid %v", v)
	}
}

// TestInstallSyncFailureRegistersNothing makes the sync before
// registration fail, as a disk that cannot write does: nothing is
// registered, neither the content nor its record stays, and the store
// works on once syncs succeed.
func TestInstallSyncFailureRegistersNothing(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	p := testPath("p")
	broken := errors.New("I/O error (injected)")
	st.SyncFS = func() error { return broken }
	_, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"f": "data"})})
	if !errors.Is(err, broken) || !strings.Contains(err.Error(), p.String()) {
		t.Fatalf("got %v, want the sync's error naming %s", err, p)
	}
	if v := storetest.Valid(t, st, p); v[p] {
		t.Fatalf("%s is registered though its content was not synced", p)
	}
	for _, left := range []string{st.Physical(p), filepath.Join(st.Dir, "info", p.Hash.String()+".json")} {
		if exists(left) {
			t.Errorf("a failed install left %s", left)
		}
	}
	st.SyncFS = nil
	if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"f": "data"})}); err != nil {
		t.Fatal(err)
	}
	if err := storetest.VerifyPath(st, p); err != nil {
		t.Fatal(err)
	}
}

// snapshot copies what a sync makes durable of the store in dir (its
// paths and their records) to a new directory: what a power loss right
// after the sync leaves of them.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	snap := t.TempDir()
	for _, sub := range []string{"store", "info"} {
		if _, _, err := fstree.CopyTree(filepath.Join(dir, sub), filepath.Join(snap, sub)); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// crashImage is the store in dir as a power loss at this moment could
// leave it at worst: the database as it is now (its writes may reach the
// disk at any moment), the files as they were at the last sync (durable),
// nothing written since.
func crashImage(t *testing.T, dir, lastSync string) string {
	t.Helper()
	crash := t.TempDir()
	if lastSync != "" {
		for _, sub := range []string{"store", "info"} {
			if err := os.Rename(filepath.Join(lastSync, sub), filepath.Join(crash, sub)); err != nil {
				t.Fatal(err)
			}
		}
		// The copies' modes are not what this is about.
		entries, _ := os.ReadDir(filepath.Join(crash, "store"))
		for _, e := range entries {
			if err := fstree.Canonicalize(filepath.Join(crash, "store", e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range []string{store.DBFile, store.DBFile + "-wal"} {
		in, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(crash, f))
		if err == nil {
			_, err = io.Copy(out, in)
			out.Close()
		}
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return crash
}

// TestPowerLossKeepsRegisteredPathsWhole simulates losing whatever was
// not synced: after each install, a crash image (the database as it is,
// the files as of the last sync) must hold every registered path whole,
// and the records in it must rebuild the same database.
func TestPowerLossKeepsRegisteredPathsWhole(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	var lastSync string
	st.SyncFS = func() error {
		lastSync = snapshot(t, dir)
		return nil
	}
	var installed []store.Path
	prev := store.Path{}
	for i, name := range []string{"a", "b", "c"} {
		p := testPath(name)
		files := map[string]string{"data": strings.Repeat(name, 1000*(i+1)), "sub/more": name}
		var refs []store.Path
		if prev.Name != "" {
			files["ref"] = prev.String()
			refs = []store.Path{prev}
		}
		if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, files), References: refs}); err != nil {
			t.Fatal(err)
		}
		installed = append(installed, p)
		prev = p

		// Power lost right after the install returned.
		crash := crashImage(t, dir, lastSync)
		cs := openStore(t, crash)
		valid, err := cs.ValidPathList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(valid) != len(installed) {
			t.Fatalf("after install %d the crash image registers %d paths, want %d", i+1, len(valid), len(installed))
		}
		for _, v := range valid {
			if err := storetest.VerifyPath(cs, v); err != nil {
				t.Fatalf("after install %d, in the crash image: %v", i+1, err)
			}
		}
		cs.Close()
		// The records alone rebuild it.
		for _, f := range []string{store.DBFile, store.DBFile + "-wal", store.DBFile + "-shm"} {
			os.Remove(filepath.Join(crash, f))
		}
		res, err := store.RebuildDB(ctx, crash, store.RebuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Registered) != len(installed) || len(res.Refused) != 0 {
			t.Fatalf("rebuilding the crash image: registered %v, refused %v; want %v", res.Registered, res.Refused, installed)
		}
	}
}

// TestGCUnregistersDurablyBeforeDeleting checks that when GC syncs, what
// it is about to delete is unregistered and still whole: the database
// cannot lose the unregistration after the files are gone.
func TestGCUnregistersDurablyBeforeDeleting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	p := testPath("garbage")
	if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"f": "x"})}); err != nil {
		t.Fatal(err)
	}
	syncs := 0
	st.SyncFS = func() error {
		syncs++
		db := storetest.OpenDB(t, dir)
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM paths WHERE path = ?`, p.String()).Scan(&n); err != nil {
			t.Error(err)
		}
		if n != 0 || !exists(filepath.Join(st.Physical(p), "f")) || !exists(filepath.Join(dir, "info", p.Hash.String()+".json")) {
			t.Errorf("at GC's sync: %d rows for %s, content there %v; want it unregistered, its files and record not yet removed", n, p, exists(st.Physical(p)))
		}
		return nil
	}
	res, err := st.GC(ctx, store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 1 || syncs != 1 {
		t.Fatalf("deleted %v with %d syncs, want %s with 1", res.Deleted, syncs, p)
	}
	if exists(st.Physical(p)) || exists(filepath.Join(dir, "info", p.Hash.String()+".json")) {
		t.Errorf("GC left the content or the record of %s", p)
	}
}

// TestGCRemovesStaleLocksAndRecords: lock files of paths that are not
// valid (failed builds, a GC killed after unregistering) and records of
// paths that are not (an install killed before registering) are removed
// by the next GC; a valid path's lock file and record stay.
func TestGCRemovesStaleLocksAndRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	live := testPath("live")
	if _, err := st.Install(ctx, store.InstallRequest{Path: live, Source: stage(t, st, map[string]string{"f": "x"})}); err != nil {
		t.Fatal(err)
	}
	storetest.Link(t, st, "result", live)
	gone := testPath("gone")
	staleLock := filepath.Join(dir, "locks", gone.Hash.String()+".lock")
	staleRecord := filepath.Join(dir, "info", gone.Hash.String()+".json")
	halfRecord := filepath.Join(dir, "info", "."+gone.Hash.String()+".json.tmp-123")
	for _, f := range []string{staleLock, staleRecord, halfRecord} {
		if err := os.WriteFile(f, []byte("{}"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	liveLock := filepath.Join(dir, "locks", live.Hash.String()+".lock")
	if !exists(liveLock) {
		t.Fatalf("installing %s made no lock file", live)
	}
	dry, err := st.GC(ctx, store.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var records []string
	for _, l := range dry.Leftovers {
		if filepath.Dir(l) == filepath.Join(dir, "info") {
			records = append(records, l)
		}
	}
	if len(dry.StaleLocks) != 1 || dry.StaleLocks[0] != staleLock || len(records) != 2 || !exists(staleLock) {
		t.Fatalf("dry run: stale locks %v, leftovers %v; want %s, and the two records, kept", dry.StaleLocks, dry.Leftovers, staleLock)
	}
	if _, err := st.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{staleLock, staleRecord, halfRecord} {
		if exists(f) {
			t.Errorf("GC left %s", f)
		}
	}
	if !exists(liveLock) || !exists(filepath.Join(dir, "info", live.Hash.String()+".json")) {
		t.Errorf("GC removed the lock file or the record of the live %s", live)
	}
}

// TestRootsAndGenerationsSyncBeforeTheirLinks: when a root or a
// generation is synced, its record and its row are there, and the link
// that relies on them (./result, the profile's) is not yet.
func TestRootsAndGenerationsSyncBeforeTheirLinks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	p := testPath("p")
	if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"f": "x"})}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "result")
	var seen []string
	st.SyncFS = func() error {
		roots, err := st.IndirectRoots(ctx)
		if err != nil {
			t.Error(err)
		}
		records, _ := os.ReadDir(filepath.Join(dir, "roots"))
		gens, err := st.GenerationRecords(ctx, "")
		if err != nil {
			t.Error(err)
		}
		genFile := exists(filepath.Join(dir, "generations", "sys", "1.json"))
		seen = append(seen, fmt.Sprintf("roots %d/%d link %v, generations %d/%v", len(roots), len(records), exists(link), len(gens), genFile))
		return nil
	}
	if err := st.LinkRoot(ctx, link, p); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddGeneration(ctx, store.GenerationRecord{GenerationID: store.GenerationID{Profile: "sys"}, Toplevel: p, Created: 1}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"roots 1/1 link false, generations 0/false",
		"roots 1/1 link true, generations 1/true",
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("at the syncs: %q, want %q", seen, want)
	}
	if target, err := os.Readlink(filepath.Join(dir, "generations", "sys", "current")); err != nil || target != "1.json" {
		t.Errorf("generations/sys/current points at %q (%v), want 1.json", target, err)
	}
}

// TestSpaceErrorReadsTheLog: a failed build whose log says a write to its
// output or build directory found the disk full is a *NoSpaceError; one
// that filled its private /tmp, or failed otherwise, is not (this store's
// file system has room).
func TestSpaceErrorReadsTheLog(t *testing.T) {
	st := openStore(t, t.TempDir())
	failed := errors.New("sandbox: build exited with status 1")
	out := testPath("out").String()
	for _, c := range []struct {
		log  string
		full bool
	}{
		{"fill: write " + out + ": no space left on device", true},
		{"cp: write /build/src/x: no space left on device", true},
		{"write /tmp/scratch: no space left on device", false},
		{"some other failure", false},
	} {
		err := st.SpaceError(failed, "starting", c.log)
		var ns *store.NoSpaceError
		if errors.As(err, &ns) != c.full || !errors.Is(err, failed) {
			t.Errorf("log %q: got %v, want a NoSpaceError %v, wrapping the build's error", c.log, err, c.full)
		}
	}
}
