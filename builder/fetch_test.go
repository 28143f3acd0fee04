package builder_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	_ "hephc.dev/hephc/builder"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

func TestMain(m *testing.M) {
	sandbox.Init()
	os.Exit(m.Run())
}

// fakeProxy writes a module proxy (GOPROXY=file://…) serving one module,
// and returns its directory and the module's h1: sum.
func fakeProxy(t *testing.T, mod, ver string) (string, string) {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module "+mod+"\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "m.go"), []byte("package m\n\nconst Answer = 42\n"), 0o644)
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, module.Version{Path: mod, Version: ver}, src); err != nil {
		t.Fatal(err)
	}
	proxy := t.TempDir()
	dir := filepath.Join(proxy, mod, "@v")
	os.MkdirAll(dir, 0o755)
	zipPath := filepath.Join(dir, ver+".zip")
	if err := os.WriteFile(zipPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	return proxy, sum
}

func realizeOne(t *testing.T, d *store.Derivation, opts realize.Options) (*store.Store, store.Path, error) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d.System = "x86_64-linux"
	h, err := d.Hash()
	if err != nil {
		t.Fatal(err)
	}
	g := &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{h: d}, Origins: map[store.DrvHash]store.Origin{h: {Attr: "m", Pos: srcpos.Pos{File: "system.cue", Line: 3, Col: 4}}}}
	_, err = realize.Realize(context.Background(), st, g, []store.DrvHash{h}, opts)
	return st, g.PathOf(h), err
}

func goModule(mod, ver, sum string) *store.Derivation {
	return &store.Derivation{
		Name: "m-" + ver, Version: ver, Builder: "builtin:fetch-gomod",
		Attrs: map[string]any{"module": mod, "version": ver}, OutputHash: sum,
	}
}

func TestFetchGoModFromFileProxy(t *testing.T) {
	proxy, sum := fakeProxy(t, "example.com/m", "v1.0.0")
	env := func(k string) string {
		if k == "GOPROXY" {
			return "file://" + proxy
		}
		return ""
	}
	st, p, err := realizeOne(t, goModule("example.com/m", "v1.0.0", sum), realize.Options{Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(st.Physical(p), "m.go"))
	if err != nil || !strings.Contains(string(b), "Answer = 42") {
		t.Fatalf("got %q (%v), want the module's file", b, err)
	}
	if err := storetest.VerifyPath(st, p); err != nil {
		t.Error(err)
	}
	info, _, _ := st.QueryPathInfo(context.Background(), p)
	if info.CA != sum {
		t.Errorf("got ca %q, want the pin %q", info.CA, sum)
	}
}

// TestFetchGoModRefusesCorruptDownload flips one byte of the served zip: the
// fetch must fail naming both hashes, and nothing may be registered.
func TestFetchGoModRefusesCorruptDownload(t *testing.T) {
	proxy, sum := fakeProxy(t, "example.com/m", "v1.0.0")
	zipPath := filepath.Join(proxy, "example.com/m/@v/v1.0.0.zip")
	b, _ := os.ReadFile(zipPath)
	// Flip a byte inside the stored (uncompressed-or-not) data of m.go.
	r, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var off int64 = -1
	for _, f := range r.File {
		if strings.HasSuffix(f.Name, "m.go") {
			off, _ = f.DataOffset()
		}
	}
	if off < 0 {
		t.Fatal("m.go not in the zip")
	}
	b[off+2] ^= 0x20
	os.WriteFile(zipPath, b, 0o644)
	env := func(k string) string {
		if k == "GOPROXY" {
			return "file://" + proxy
		}
		return ""
	}
	st, p, err := realizeOne(t, goModule("example.com/m", "v1.0.0", sum), realize.Options{Getenv: env})
	if err == nil {
		t.Fatal("realizing from a corrupt proxy succeeded")
	}
	var be *realize.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("got %v, want a BuildError", err)
	}
	log := strings.Join(be.LogTail, "\n")
	if !strings.Contains(log+err.Error(), sum) {
		t.Errorf("the error does not name the pinned hash %s:\n%v\n%s", sum, err, log)
	}
	if got := be.Origin.Pos.String(); got != "system.cue:3:4" {
		t.Errorf("got position %q, want the pin's position", got)
	}
	if valid, _ := st.ValidPaths(context.Background(), []store.Path{p}); valid[p] {
		t.Error("the corrupt module was registered")
	}
	if _, err := os.Lstat(st.Physical(p)); err == nil {
		t.Error("the corrupt module is in the store directory")
	}
}

// TestFetchGoModRefusesOtherContent serves a well-formed zip of other
// content under the pinned version: a hash mismatch naming both sums.
func TestFetchGoModRefusesOtherContent(t *testing.T) {
	_, sum := fakeProxy(t, "example.com/m", "v1.0.0")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/m\n"), 0o644)
	os.WriteFile(filepath.Join(src, "m.go"), []byte("package m\n\nconst Answer = 43\n"), 0o644)
	other := t.TempDir()
	os.MkdirAll(filepath.Join(other, "example.com/m/@v"), 0o755)
	f, _ := os.Create(filepath.Join(other, "example.com/m/@v/v1.0.0.zip"))
	if err := modzip.CreateFromDir(f, module.Version{Path: "example.com/m", Version: "v1.0.0"}, src); err != nil {
		t.Fatal(err)
	}
	f.Close()
	served, _ := dirhash.HashZip(filepath.Join(other, "example.com/m/@v/v1.0.0.zip"), dirhash.Hash1)
	env := func(k string) string {
		if k == "GOPROXY" {
			return "file://" + other
		}
		return ""
	}
	st, p, err := realizeOne(t, goModule("example.com/m", "v1.0.0", sum), realize.Options{Getenv: env})
	var be *realize.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("got %v, want a BuildError", err)
	}
	log := strings.Join(be.LogTail, "\n")
	if !strings.Contains(log, "hash mismatch") || !strings.Contains(log, sum) || !strings.Contains(log, served) {
		t.Errorf("want a hash mismatch naming %s and %s; got\n%s", sum, served, log)
	}
	if valid, _ := st.ValidPaths(context.Background(), []store.Path{p}); valid[p] {
		t.Error("the wrong module was registered")
	}
}

func TestFetchFileChecksItsPin(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "motd"), []byte("hello\n"), 0o644)
	staging := t.TempDir()
	os.WriteFile(filepath.Join(staging, "motd"), []byte("hello\n"), 0o644)
	tree, err := fstree.HashTree(filepath.Join(staging, "motd"), fstree.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	file := func(pin string) *store.Derivation {
		return &store.Derivation{Name: "motd", Builder: "builtin:fetch-file", Attrs: map[string]any{"file": "motd"}, OutputHash: pin}
	}
	st, p, err := realizeOne(t, file(tree.Hash.String()), realize.Options{SourceDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(st.Physical(p)); string(b) != "hello\n" {
		t.Errorf("got %q, want the file", b)
	}
	wrong := "blake3:" + strings.Repeat("0", 64)
	_, _, err = realizeOne(t, file(wrong), realize.Options{SourceDir: dir})
	var hm *realize.HashMismatchError
	if !errors.As(err, &hm) || hm.Want != wrong || hm.Got != tree.Hash.String() {
		t.Errorf("got %v, want a hash mismatch naming %s and %s", err, wrong, tree.Hash)
	}
}
