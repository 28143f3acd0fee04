package realize_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// recordingAttester records what it was asked to attest.
type recordingAttester struct {
	mu                sync.Mutex
	built, reproduced []store.Path
}

func (a *recordingAttester) Built(_ context.Context, info *store.PathInfo) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.built = append(a.built, info.Path)
	return nil
}

func (a *recordingAttester) Reproduced(_ context.Context, info *store.PathInfo) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reproduced = append(a.reproduced, info.Path)
	return nil
}

func TestCheckReproducible(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	a := f.Step(t, "a", nil, nil, "file=hello=world")
	b := f.Step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A")
	att := &recordingAttester{}
	if _, err := f.Realize(t, realize.Options{Attester: att}, b); err != nil {
		t.Fatal(err)
	}
	pa, pb := f.G.PathOf(a), f.G.PathOf(b)
	if got, want := sortedPaths(att.built), sortedPaths([]store.Path{pa, pb}); !slices.Equal(got, want) {
		t.Fatalf("attested as built %v, want %v (the tool was added, not built)", got, want)
	}
	before, _, _ := f.St.QueryPathInfo(context.Background(), pb)
	res, err := realize.Check(context.Background(), f.St, f.G, []store.DrvHash{b}, realize.Options{Attester: att})
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if !r.Reproduced() || r.Kept != "" || len(r.Differences) != 0 || r.Rebuilt != before.ContentHash {
		t.Fatalf("got %+v, want a reproduction of %s", r, before.ContentHash)
	}
	if !slices.Equal(att.reproduced, []store.Path{pb}) {
		t.Errorf("attested as reproduced %v, want [%s]", att.reproduced, pb)
	}
	if n := storetest.BuildCount(t, f.St, b); n != 1 {
		t.Errorf("b built %d times as far as the database says, want 1 (a check is recorded apart)", n)
	}
	if _, err := os.Stat(strings.TrimSuffix(f.St.LogPath(b), ".log") + ".check.log"); err != nil {
		t.Errorf("no check log: %v", err)
	}
	after, _, _ := f.St.QueryPathInfo(context.Background(), pb)
	if after.ContentHash != before.ContentHash || after.Registered != before.Registered {
		t.Errorf("the path's record changed: %+v → %+v", before, after)
	}
	if err := storetest.VerifyPath(f.St, pb); err != nil {
		t.Error(err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(f.St.Dir, "tmp")); len(tmp) != 0 {
		t.Errorf("a reproduced check left %d entries in tmp", len(tmp))
	}
}

func TestCheckNotReproducible(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	for _, step := range []string{"time", "random"} {
		t.Run(step, func(t *testing.T) {
			h := f.Step(t, "stamp-"+step, nil, nil, "file=same=same bytes", step+"=stamp")
			if _, err := f.Realize(t, realize.Options{}, h); err != nil {
				t.Fatal(err)
			}
			p := f.G.PathOf(h)
			stored, _ := os.ReadFile(filepath.Join(f.St.Physical(p), "stamp"))
			att := &recordingAttester{}
			r, err := realize.CheckPath(context.Background(), f.St, f.G, h, realize.Options{Attester: att})
			if err != nil {
				t.Fatal(err)
			}
			if r.Reproduced() || r.Rebuilt == r.Recorded {
				t.Fatalf("got a reproduction of a build that writes the %s", step)
			}
			if len(r.Differences) != 1 || r.Differences[0].File != "stamp" || r.Differences[0].What != realize.DiffContent {
				t.Fatalf("got differences %v, want stamp's content only", r.Differences)
			}
			// "built at 2026-…" differs in the time's digits; "random …"
			// from its seventh byte at the latest.
			if off := r.Differences[0].Offset; off < 6 || off >= int64(len(stored)) {
				t.Errorf("first difference at byte %d of %q: want one inside the stamp", off, stored)
			}
			rebuilt, err := os.ReadFile(filepath.Join(r.Kept, "stamp"))
			if err != nil {
				t.Fatalf("the rebuild is not kept: %v", err)
			}
			if off := r.Differences[0].Offset; string(rebuilt[:off]) != string(stored[:off]) || rebuilt[off] == stored[off] {
				t.Errorf("byte %d is not the first that differs: %q, %q", off, stored, rebuilt)
			}
			if len(att.reproduced) != 0 {
				t.Errorf("attested %v as reproduced", att.reproduced)
			}
			if now, _ := os.ReadFile(filepath.Join(f.St.Physical(p), "stamp")); string(now) != string(stored) {
				t.Errorf("the stored path changed")
			}
			if err := storetest.VerifyPath(f.St, p); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCheckNeedsAValidPath(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	h := f.Step(t, "never", nil, nil, "file=x=y")
	_, err := realize.CheckPath(context.Background(), f.St, f.G, h, realize.Options{})
	if err == nil || !strings.Contains(err.Error(), "realize it first") {
		t.Fatalf("got %v, want an error saying the path is not valid", err)
	}
}

func TestDiffTrees(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write := func(root, name, body string, mode os.FileMode) {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(a, "same", "x", 0o644)
	write(b, "same", "x", 0o644)
	write(a, "bin/tool", strings.Repeat("a", 100000)+"X", 0o755)
	write(b, "bin/tool", strings.Repeat("a", 100000)+"Y", 0o644)
	write(a, "short", "abc", 0o644)
	write(b, "short", "abcdef", 0o644)
	write(a, "gone/deep/file", "x", 0o644)
	write(b, "new", "x", 0o644)
	write(a, "kind", "x", 0o644)
	os.Mkdir(filepath.Join(b, "kind"), 0o755)
	os.Symlink("one", filepath.Join(a, "link"))
	os.Symlink("two", filepath.Join(b, "link"))
	got, err := realize.DiffTrees(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []realize.Difference{
		{File: "bin/tool", What: realize.DiffContent, Offset: 100000},
		{File: "bin/tool", What: realize.DiffExec},
		{File: "gone", What: realize.DiffOnlyStored},
		{File: "kind", What: realize.DiffType},
		{File: "link", What: realize.DiffTarget},
		{File: "new", What: realize.DiffOnlyRebuilt},
		{File: "short", What: realize.DiffContent, Offset: 3},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if same, err := realize.DiffTrees(a, a); err != nil || len(same) != 0 {
		t.Fatalf("a tree against itself: %v, %v", same, err)
	}
}
