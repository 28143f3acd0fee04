package store_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/store"
)

// TestClosure installs a diamond with a self-reference and an unrelated
// path: the closure of the top is the diamond, sorted, each path once;
// its size sums theirs; a path that is not valid is an error naming it.
func TestClosure(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	install := func(name string, refs ...store.Path) store.Path {
		p := testPath(name)
		files := map[string]string{"self": p.String()}
		for i, r := range refs {
			files["ref"+string(rune('a'+i))] = r.String()
		}
		if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, files), References: refs}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bottom := install("bottom")
	left := install("left", bottom)
	right := install("right", bottom)
	top := install("top", left, right)
	install("unrelated", bottom)
	got, err := st.Closure(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Path{bottom, left, right, top}
	slices.SortFunc(want, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(got, want) {
		t.Errorf("closure of top: got %v, want %v", got, want)
	}
	if got, err := st.Closure(ctx, left, right); err != nil || len(got) != 3 {
		t.Errorf("closure of left and right: got %v (%v), want 3 paths", got, err)
	}
	var wantSize int64
	for _, p := range want {
		info, _, err := st.QueryPathInfo(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		wantSize += info.Size
	}
	if size, err := st.ClosureSize(ctx, top); err != nil || size != wantSize {
		t.Errorf("closure size of top: got %d (%v), want %d", size, err, wantSize)
	}
	missing := testPath("missing")
	if _, err := st.Closure(ctx, top, missing); err == nil || !strings.Contains(err.Error(), missing.String()+" is not valid") {
		t.Errorf("closure with a path that is not valid: got %v, want an error naming it", err)
	}
}

// BenchmarkClosure asks for the closure of the top of a chain of 200
// paths, as a build asks for its inputs'.
func BenchmarkClosure(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	st.SyncFS = func() error { return nil }
	var prev []store.Path
	for i := range 200 {
		p := store.Path{Hash: store.HashDerivation([]byte{byte(i), byte(i >> 8)}), Name: "chain"}
		tmp, err := st.TempDir("add-bench-")
		if err != nil {
			b.Fatal(err)
		}
		src := tmp + "/out"
		data := "leaf"
		if len(prev) > 0 {
			data = prev[0].String()
		}
		if err := os.WriteFile(src, []byte(data), 0o644); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: src, References: prev}); err != nil {
			b.Fatal(err)
		}
		os.Remove(tmp)
		prev = []store.Path{p}
	}
	for b.Loop() {
		c, err := st.Closure(ctx, prev...)
		if err != nil || len(c) != 200 {
			b.Fatalf("got %d paths (%v), want 200", len(c), err)
		}
	}
}
