package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hephc.dev/hephc/store"
)

// TestBuildDirPool: a build directory given back is taken again, never
// by two builds at once; the pool goes when its Store lets the GC lock
// go (the last of the locks it holds), and a directory given back with
// no GC lock held goes at once.
func TestBuildDirPool(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tmpEntries := func() int {
		ents, _ := os.ReadDir(filepath.Join(st.Dir, "tmp"))
		return len(ents)
	}
	gc1, err := st.LockGC(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	gc2, err := st.LockGC(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.TakeBuildDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.TakeBuildDir()
	if err != nil {
		t.Fatal(err)
	}
	if !a.New || !b.New || a.Path == b.Path {
		t.Fatalf("two builds at once got %+v and %+v, want two new directories", a, b)
	}
	a.Put()
	c, err := st.TakeBuildDir()
	if err != nil {
		t.Fatal(err)
	}
	if c.New || c.Path != a.Path {
		t.Errorf("after %s was given back, got %+v", a.Path, c)
	}
	c.Put()
	b.Put()
	gc1.Unlock()
	if n := tmpEntries(); n != 2 {
		t.Errorf("%d entries in tmp while the GC lock is still held, want the 2 pooled", n)
	}
	gc2.Unlock()
	if n := tmpEntries(); n != 0 {
		t.Errorf("%d entries left in tmp once the GC lock is let go", n)
	}
	// Without the GC lock nothing stays.
	d, err := st.TakeBuildDir()
	if err != nil {
		t.Fatal(err)
	}
	d.Put()
	if n := tmpEntries(); n != 0 {
		t.Errorf("%d entries left in tmp by a directory given back without the GC lock", n)
	}
}

// TestStaleBuildDirs: the first build directory a Store takes removes
// the pooled directories a killed process left (no lock held), but not
// those of a live process (locked), nor one just made (not locked yet).
func TestStaleBuildDirs(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	old := time.Now().Add(-time.Hour)
	mk := func(name string, mtime time.Time) string {
		p := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(p, "u", "build"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	killed, live, young := mk("build-pool-1", old), mk("build-pool-2", old), mk("build-pool-3", time.Now())
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := st.TakeBuildDir()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Discard()
	for p, want := range map[string]bool{killed: false, live: true, young: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}
