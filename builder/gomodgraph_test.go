package builder_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// graph builds a store.Graph derivation by derivation, inputs first.
type graph struct{ g *store.Graph }

func newGraph() *graph {
	return &graph{&store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}, Origins: map[store.DrvHash]store.Origin{}}}
}

func (g *graph) add(t *testing.T, d *store.Derivation) store.DrvHash {
	t.Helper()
	d.System = "x86_64-linux"
	h, err := d.Hash()
	if err != nil {
		t.Fatal(err)
	}
	g.g.Derivations[h] = d
	g.g.Origins[h] = store.Origin{Attr: d.Name, Pos: srcpos.Pos{File: "system.cue", Line: 1, Col: 1}}
	return h
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// proxyModule adds mod@ver, made of files, to the file module proxy at
// proxy and returns its h1: sum.
func proxyModule(t *testing.T, proxy, mod, ver string, files map[string]string) string {
	t.Helper()
	src := t.TempDir()
	for name, content := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	emod, _ := module.EscapePath(mod)
	dir := filepath.Join(proxy, emod, "@v")
	os.MkdirAll(dir, 0o755)
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, module.Version{Path: mod, Version: ver}, src); err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(dir, ver+".zip")
	if err := os.WriteFile(zipPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func goModSum(t *testing.T, gomod string) string {
	t.Helper()
	sum, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(gomod)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func proxyEnv(proxy string) func(string) string {
	return func(k string) string {
		if k == "GOPROXY" {
			return "file://" + proxy
		}
		return ""
	}
}

// modGraphFixture is a main module whose go.sum lists two go.mod files,
// one of a module path that needs escaping, served by a file proxy.
type modGraphFixture struct {
	proxy   string
	mainSum string
	mods    map[string]string // escaped path@v/version.mod -> content
}

func newModGraphFixture(t *testing.T) *modGraphFixture {
	f := &modGraphFixture{proxy: t.TempDir(), mods: map[string]string{
		"example.com/a/@v/v1.0.0.mod":      "module example.com/a\n\ngo 1.22\n",
		"example.com/!upper/@v/v1.2.0.mod": "module example.com/Upper\n\nrequire example.com/a v1.0.0\n",
		"example.com/!upper/@v/v1.1.0.mod": "module example.com/Upper\n",
	}}
	gosum := "example.com/Upper v1.2.0 h1:zipsumzipsumzipsumzipsumzipsumzipsumzipsu0=\n" +
		"example.com/Upper v1.2.0/go.mod " + goModSum(t, f.mods["example.com/!upper/@v/v1.2.0.mod"]) + "\n" +
		"example.com/a v1.0.0/go.mod " + goModSum(t, f.mods["example.com/a/@v/v1.0.0.mod"]) + "\n" +
		"example.com/Upper v1.1.0/go.mod " + goModSum(t, f.mods["example.com/!upper/@v/v1.1.0.mod"]) + "\n"
	for p, content := range f.mods {
		full := filepath.Join(f.proxy, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, []byte(content), 0o644)
	}
	f.mainSum = proxyModule(t, f.proxy, "example.com/main", "v1.0.0", map[string]string{
		"go.mod":  "module example.com/main\n\ngo 1.22\n\nrequire example.com/Upper v1.2.0\n",
		"go.sum":  gosum,
		"main.go": "package main\n\nfunc main() {}\n",
	})
	return f
}

// want is the tree a fetch of the fixture's go.mod files must produce.
func (f *modGraphFixture) want(t *testing.T) store.OutputHash {
	t.Helper()
	dir := t.TempDir()
	for p, content := range f.mods {
		full := filepath.Join(dir, "cache/download", p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, []byte(content), 0o444)
	}
	tree, err := fstree.HashTree(dir, fstree.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tree.Hash
}

func (f *modGraphFixture) graph(t *testing.T, pin string) (*graph, store.DrvHash) {
	g := newGraph()
	src := g.add(t, &store.Derivation{Name: "main-v1.0.0", Version: "v1.0.0", Builder: "builtin:fetch-gomod",
		Attrs: map[string]any{"module": "example.com/main", "version": "v1.0.0"}, OutputHash: f.mainSum})
	mf := g.add(t, &store.Derivation{Name: "main-gomod-graph", Builder: "builtin:fetch-gomod-graph",
		Inputs: map[string]store.DrvHash{"src": src}, OutputHash: pin})
	return g, mf
}

func TestFetchGoModGraph(t *testing.T) {
	f := newModGraphFixture(t)
	want := f.want(t)
	g, mf := f.graph(t, want.String())
	st := openStore(t)
	if _, err := realize.Realize(context.Background(), st, g.g, []store.DrvHash{mf}, realize.Options{Getenv: proxyEnv(f.proxy)}); err != nil {
		t.Fatal(err)
	}
	out := st.Physical(g.g.PathOf(mf))
	for p, content := range f.mods {
		b, err := os.ReadFile(filepath.Join(out, "cache/download", p))
		if err != nil || string(b) != content {
			t.Errorf("%s: got %q (%v), want %q", p, b, err, content)
		}
	}
	var n int
	filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	if n != len(f.mods) {
		t.Errorf("got %d files, want only the %d go.mod files", n, len(f.mods))
	}
}

// TestFetchGoModGraphRefusesAModifiedGoMod serves a go.mod that is not the
// one go.sum pins: the fetch fails naming both hashes, and stores nothing.
func TestFetchGoModGraphRefusesAModifiedGoMod(t *testing.T) {
	f := newModGraphFixture(t)
	want := f.want(t)
	wantSum := goModSum(t, f.mods["example.com/a/@v/v1.0.0.mod"])
	bad := "module example.com/a\n\ngo 1.22\n\nrequire example.com/evil v6.6.6\n"
	os.WriteFile(filepath.Join(f.proxy, "example.com/a/@v/v1.0.0.mod"), []byte(bad), 0o644)
	g, mf := f.graph(t, want.String())
	st := openStore(t)
	_, err := realize.Realize(context.Background(), st, g.g, []store.DrvHash{mf}, realize.Options{Getenv: proxyEnv(f.proxy)})
	var be *realize.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("got %v, want a BuildError", err)
	}
	log := strings.Join(be.LogTail, "\n")
	for _, s := range []string{"example.com/a@v1.0.0", "go.sum says " + wantSum, goModSum(t, bad), "nothing was stored"} {
		if !strings.Contains(log, s) {
			t.Errorf("the log does not say %q:\n%s", s, log)
		}
	}
	if valid, _ := st.ValidPaths(context.Background(), []store.Path{g.g.PathOf(mf)}); valid[g.g.PathOf(mf)] {
		t.Error("the go.mod files were registered")
	}
}

// TestFetchGoModGraphIsPinned: the output is checked against the blake3 pin.
func TestFetchGoModGraphIsPinned(t *testing.T) {
	f := newModGraphFixture(t)
	want := f.want(t)
	wrong := "blake3:" + strings.Repeat("0", 64)
	g, mf := f.graph(t, wrong)
	_, err := realize.Realize(context.Background(), openStore(t), g.g, []store.DrvHash{mf}, realize.Options{Getenv: proxyEnv(f.proxy)})
	var hm *realize.HashMismatchError
	if !errors.As(err, &hm) || hm.Got != want.String() {
		t.Errorf("got %v, want a hash mismatch naming %s", err, want)
	}
}
