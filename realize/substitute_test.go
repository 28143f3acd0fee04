package realize_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// substituteFixture realizes a ← b (b refers to a) in a store and opens an
// empty second one.
func substituteFixture(t *testing.T) (f *storetest.Fixture, pa, pb store.Path, dst *store.Store) {
	f = storetest.New(t, t.TempDir())
	a := f.Step(t, "a", nil, nil, "file=data=from a", "file=more=x")
	b := f.Step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A")
	if _, err := f.Realize(t, realize.Options{}, b); err != nil {
		t.Fatal(err)
	}
	dst, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	return f, f.G.PathOf(a), f.G.PathOf(b), dst
}

func TestSubstitute(t *testing.T) {
	f, pa, pb, dst := substituteFixture(t)
	ctx := context.Background()
	got, err := realize.Substitute(ctx, dst, f.St, nil, pb)
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Path{pa, pb}; !slices.Equal(got, want) {
		t.Fatalf("substituted %v, want %v (references first)", got, want)
	}
	for _, p := range got {
		want, _, _ := f.St.QueryPathInfo(ctx, p)
		info, ok, err := dst.QueryPathInfo(ctx, p)
		if err != nil || !ok {
			t.Fatalf("%s is not valid after substitution (%v)", p, err)
		}
		if info.ContentHash != want.ContentHash || !slices.Equal(info.References, want.References) || info.Deriver != want.Deriver {
			t.Errorf("%s: got %+v, want %+v", p, info, want)
		}
		if err := storetest.VerifyPath(dst, p); err != nil {
			t.Error(err)
		}
	}
	if again, err := realize.Substitute(ctx, dst, f.St, nil, pb); err != nil || len(again) != 0 {
		t.Errorf("substituting again copied %v (%v), want nothing", again, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dst.Dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp holds %d entries after substituting", len(entries))
	}
}

// lyingSource exports what another path holds, or a tar of its own.
type lyingSource struct {
	*store.Store
	export func(ctx context.Context, p store.Path, w io.Writer) error
}

func (s lyingSource) Export(ctx context.Context, p store.Path, w io.Writer) error {
	return s.export(ctx, p, w)
}

func TestSubstituteRefusesWhatTheSourceDoesNotSay(t *testing.T) {
	f, pa, _, dst := substituteFixture(t)
	ctx := context.Background()
	hostileTar := func(hdrs ...*tar.Header) func(context.Context, store.Path, io.Writer) error {
		return func(_ context.Context, p store.Path, w io.Writer) error {
			tw := tar.NewWriter(w)
			for _, h := range hdrs {
				h.Name = strings.ReplaceAll(h.Name, "P", p.Base())
				tw.WriteHeader(h)
				if h.Typeflag == tar.TypeReg {
					tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
				}
			}
			return tw.Close()
		}
	}
	outside := filepath.Join(t.TempDir(), "outside")
	forged := filepath.Join(t.TempDir(), "forged")
	os.Mkdir(forged, 0o755)
	os.WriteFile(filepath.Join(forged, "data"), []byte("from b"), 0o644)
	os.WriteFile(filepath.Join(forged, "more"), []byte("y"), 0o644)
	for _, tc := range []struct {
		name   string
		export func(context.Context, store.Path, io.Writer) error
		want   string
	}{
		{"other content", func(_ context.Context, p store.Path, w io.Writer) error {
			// As many bytes as a has, but not a's.
			return fstree.WriteTar(w, forged, p.Base())
		}, "hashes to"},
		{"escape", hostileTar(&tar.Header{Name: "P/", Typeflag: tar.TypeDir}, &tar.Header{Name: "P/../../x", Typeflag: tar.TypeReg, Size: 1}), "refused"},
		{"through a symlink", hostileTar(&tar.Header{Name: "P/", Typeflag: tar.TypeDir}, &tar.Header{Name: "P/l", Typeflag: tar.TypeSymlink, Linkname: outside},
			&tar.Header{Name: "P/l/x", Typeflag: tar.TypeReg, Size: 1}), "refused"},
		{"too big", hostileTar(&tar.Header{Name: "P/", Typeflag: tar.TypeDir}, &tar.Header{Name: "P/x", Typeflag: tar.TypeReg, Size: 1 << 20}), "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.MkdirAll(outside, 0o755)
			_, err := realize.Substitute(ctx, dst, lyingSource{f.St, tc.export}, nil, pa)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if v, _ := dst.ValidPaths(ctx, []store.Path{pa}); v[pa] {
				t.Fatalf("%s is valid after a refused substitution", pa)
			}
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Fatalf("the substitution wrote outside the store")
			}
			if entries, _ := os.ReadDir(filepath.Join(dst.Dir, "tmp")); len(entries) != 0 {
				t.Errorf("tmp holds %d entries after a refused substitution", len(entries))
			}
		})
	}
}

// TestRealizeSubstitutes realizes in a second store what the first has:
// nothing is built there, everything copied.
func TestRealizeSubstitutes(t *testing.T) {
	f, pa, pb, _ := substituteFixture(t)
	other := storetest.New(t, t.TempDir())
	b := pb.Hash
	res, err := realize.Realize(context.Background(), other.St, f.G, []store.DrvHash{b}, realize.Options{Substitutes: []realize.Source{f.St}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Path{pa, pb}; !slices.Equal(res.Substituted, sortedPaths(want)) || len(res.Built)+len(res.Fetched) != 0 {
		t.Fatalf("substituted %v, built %v, fetched %v; want %v substituted, nothing built", res.Substituted, res.Built, res.Fetched, want)
	}
	if n := storetest.BuildCount(t, other.St, b); n != 0 {
		t.Errorf("b was built %d times in the second store, want never", n)
	}
	if err := storetest.VerifyPath(other.St, pb); err != nil {
		t.Error(err)
	}
}

func sortedPaths(ps []store.Path) []store.Path {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) })
	return ps
}
