package archive

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// The fixtures archive, registry and pkgimage tests share.
var newStore = pathtest.NewStore
var install = pathtest.Install
var testKey = pathtest.Key

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// policy trusts alice, bob and carol and needs n signatures of every path.
func policy(t testing.TB, n int) *trust.Policy {
	p := &trust.Policy{Source: "test policy", Rules: []trust.Rule{{Signatures: n}}}
	for _, name := range []string{"alice", "bob", "carol"} {
		p.People = append(p.People, trust.Person{Name: name, Keys: []trust.Key{{Public: testKey(t, name).Public()}}})
	}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	return p
}

// signAll attests every path of s by each of signers, in s's
// attestations directory.
func signAll(t testing.TB, s *store.Store, ps []store.Path, signers ...string) {
	t.Helper()
	for _, p := range ps {
		sub, err := StoreSubject(context.Background(), s, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range signers {
			pathtest.Attest(t, s, p, sub, n, testNow)
		}
	}
}

// sample makes lib (with a symlink, an executable, a directory) and app
// referring to it.
func sample(t testing.TB, s *store.Store) []store.Path {
	lib := install(t, s, "lib", map[string]string{"lib/libx.so*": "ELF...", "share/": "", "README": "hello\n", "current": "->lib"})
	app := install(t, s, "app", map[string]string{"bin/app*": "#!/bin/sh\nexec " + lib.String() + "/lib/libx.so\n"}, lib)
	return []store.Path{app, lib}
}

func export(t testing.TB, s *store.Store, ps []store.Path) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	if _, err := Export(context.Background(), s, ps, dir, ExportOptions{Attestations: trust.StoreDir(s.Dir)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func importInto(t testing.TB, s *store.Store, dir string, ps ...*trust.Policy) (*ImportResult, error) {
	return Import(context.Background(), s, dir, ImportOptions{Policies: ps, Now: testNow, Attestations: trust.StoreDir(s.Dir)})
}

// storeState lists what a store holds: valid paths and files on disk.
func storeState(t testing.TB, s *store.Store) string {
	var b strings.Builder
	filepath.WalkDir(filepath.Join(s.Dir, "store"), func(p string, d fs.DirEntry, err error) error {
		fmt.Fprintln(&b, strings.TrimPrefix(p, s.Dir))
		return nil
	})
	filepath.WalkDir(filepath.Join(s.Dir, "attestations"), func(p string, d fs.DirEntry, err error) error {
		fmt.Fprintln(&b, strings.TrimPrefix(p, s.Dir))
		return nil
	})
	ps, err := s.ValidPathList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(&b, ps)
	return b.String()
}

func TestExportImportRoundTrip(t *testing.T) {
	src := newStore(t)
	ps := sample(t, src)
	signAll(t, src, ps, "alice", "bob")
	dir := export(t, src, ps)

	dst := newStore(t)
	res, err := importInto(t, dst, dir, policy(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Imported) != 2 || res.Imported[0] != ps[1] {
		t.Fatalf("imported %v, want lib then app", res.Imported)
	}
	ctx := context.Background()
	for _, p := range ps {
		a, _, _ := src.QueryPathInfo(ctx, p)
		b, ok, err := dst.QueryPathInfo(ctx, p)
		if err != nil || !ok {
			t.Fatalf("%s not valid after import: %v", p, err)
		}
		if a.ContentHash != b.ContentHash || fmt.Sprint(a.References) != fmt.Sprint(b.References) {
			t.Fatalf("%s: got %s %v, want %s %v", p, b.ContentHash, b.References, a.ContentHash, a.References)
		}
		envs, err := trust.StoreDir(dst.Dir).List(p.Base())
		if err != nil || len(envs) != 2 {
			t.Fatalf("%s: %d attestations kept, want 2 (%v)", p, len(envs), err)
		}
	}
	// Importing again finds everything present.
	res, err = importInto(t, dst, dir, policy(t, 2))
	if err != nil || len(res.Present) != 2 || len(res.Imported) != 0 {
		t.Fatalf("again: %+v, %v", res, err)
	}
}

func TestExportReproducible(t *testing.T) {
	a, b := newStore(t), newStore(t)
	pa, pb := sample(t, a), sample(t, b)
	signAll(t, a, pa, "alice")
	signAll(t, b, pb, "alice")
	if digestTree(t, export(t, a, pa)) != digestTree(t, export(t, b, pb)) {
		t.Fatal("two stores holding the same paths exported different bytes")
	}
}

// The layer format is a contract: statements bind its diff id, and
// registries share its blobs. This pins it.
func TestLayerGolden(t *testing.T) {
	p, err := store.ParsePath("/heph/store/0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghij0-golden")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.MkdirAll(filepath.Join(root, "empty"), 0o755)
	os.WriteFile(filepath.Join(root, "bin", "hi"), []byte("#!/bin/sh\necho hi\n"), 0o700)
	os.WriteFile(filepath.Join(root, "hello"), []byte("hello\n"), 0o600)
	os.Symlink("hello", filepath.Join(root, "link"))
	li, err := WriteLayer(io_discard{}, root, p)
	if err != nil {
		t.Fatal(err)
	}
	diff, err := DiffID(root, p)
	if err != nil || diff != li.DiffID {
		t.Fatalf("DiffID %s, WriteLayer's %s (%v)", diff, li.DiffID, err)
	}
	const wantDiff = "sha256:462383fedfeb96991c354b9db6184a4fff25ab56e30f7f8bcc9ecccf48b0afa3"
	if li.DiffID.String() != wantDiff {
		t.Errorf("diff id %s, want %s", li.DiffID, wantDiff)
	}
}

type io_discard struct{}

func (io_discard) Write(b []byte) (int, error) { return len(b), nil }

func digestTree(t testing.TB, dir string) string {
	h := sha256.New()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(h, strings.TrimPrefix(p, dir), d.Type())
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// go-containerregistry reads the layout: each path's layer decompresses
// to its diff id.
func TestLayoutReadableByGGCR(t *testing.T) {
	s := newStore(t)
	ps := sample(t, s)
	signAll(t, s, ps, "alice")
	dir := export(t, s, ps)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 4 {
		t.Fatalf("%d manifests, want 2 paths and 2 attestations", len(im.Manifests))
	}
	for _, d := range im.Manifests[:2] {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		l, err := img.LayerByDigest(m.Layers[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := copyAll(h, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != m.Annotations[AnnotationDiffID] {
			t.Fatalf("%s: layer decompresses to %s, the manifest says %s", d.Annotations[AnnotationPath], got, m.Annotations[AnnotationDiffID])
		}
	}
	for _, d := range im.Manifests[2:] {
		if d.ArtifactType != EnvelopeMediaType {
			t.Fatalf("got %s, want attestations last", d.ArtifactType)
		}
	}
}

// A store that has a path gains the attestations of another store's
// archive for the same bytes: not before this test's policy counts them.
func TestImportTwoStoresCombine(t *testing.T) {
	a, b := newStore(t), newStore(t)
	pa, pb := sample(t, a), sample(t, b)
	signAll(t, a, pa, "alice")
	signAll(t, b, pb, "bob")
	one := export(t, a, pa)
	if _, err := importInto(t, newStore(t), one, policy(t, 2)); !IsRefused(err) {
		t.Fatalf("one signature, signatures: 2: got %v", err)
	}
	// b imports a's archive: it has the paths, and gains alice's
	// attestations of them.
	res, err := importInto(t, b, one, policy(t, 1))
	if err != nil || len(res.Present) != 2 || res.Kept != 2 {
		t.Fatalf("b imports a's archive: %+v, %v; want 2 present, 2 attestations kept", res, err)
	}
	both := export(t, b, pb)
	if _, err := importInto(t, newStore(t), both, policy(t, 2)); err != nil {
		t.Fatalf("alice and bob, signatures: 2: %v", err)
	}
}

func TestImportPinnedPath(t *testing.T) {
	src := newStore(t)
	f := filepath.Join(t.TempDir(), "data")
	os.WriteFile(f, []byte("pinned bytes\n"), 0o644)
	p, err := src.Add(context.Background(), f, "data")
	if err != nil {
		t.Fatal(err)
	}
	dir := export(t, src, []store.Path{p})
	res, err := importInto(t, newStore(t), dir, policy(t, 3))
	if err != nil || len(res.Imported) != 1 || !res.Decisions[0].OnPin {
		t.Fatalf("a pinned path with no signatures: %+v, %v", res, err)
	}
}

func copyAll(w interface{ Write([]byte) (int, error) }, r interface{ Read([]byte) (int, error) }) (int64, error) {
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		w.Write(buf[:k])
		n += int64(k)
		if err != nil {
			if err.Error() == "EOF" {
				return n, nil
			}
			return n, err
		}
	}
}
