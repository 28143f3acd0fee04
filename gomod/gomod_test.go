package gomod

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
	modzip "golang.org/x/mod/zip"
)

// fakeProxy serves files by URL path and counts requests.
type fakeProxy struct {
	files map[string][]byte
	hits  atomic.Int64
	fail  int // a status to answer everything with, when not 0
}

func (p *fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.hits.Add(1)
	if p.fail != 0 {
		http.Error(w, "failing", p.fail)
		return
	}
	b, ok := p.files[r.URL.Path]
	if !ok {
		http.Error(w, "not found: "+r.URL.Path, http.StatusNotFound)
		return
	}
	w.Write(b)
}

// addModule makes a module version's zip from files (name → content),
// adds its .mod, .info and zip, and returns its sum.
func (p *fakeProxy) addModule(t *testing.T, path, version string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		f := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var zip bytes.Buffer
	if err := modzip.CreateFromDir(&zip, module.Version{Path: path, Version: version}, dir); err != nil {
		t.Fatal(err)
	}
	ep, _ := module.EscapePath(path)
	ev, _ := module.EscapeVersion(version)
	if p.files == nil {
		p.files = make(map[string][]byte)
	}
	p.files["/"+ep+"/@v/"+ev+".zip"] = zip.Bytes()
	p.files["/"+ep+"/@v/"+ev+".info"] = []byte(`{"Version":"` + version + `"}`)
	gomod := files["go.mod"]
	if gomod == "" {
		gomod = "module " + path + "\n"
	}
	p.files["/"+ep+"/@v/"+ev+".mod"] = []byte(gomod)
	list := string(p.files["/"+ep+"/@v/list"])
	p.files["/"+ep+"/@v/list"] = []byte(list + version + "\n")
	zf := filepath.Join(t.TempDir(), "m.zip")
	os.WriteFile(zf, zip.Bytes(), 0o644)
	sum, err := dirhash.HashZip(zf, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func newTestResolver(t *testing.T, env Env) *Resolver {
	t.Helper()
	r, err := NewResolver(env, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestProxyFallsBackAsTheGoCommandDoes(t *testing.T) {
	good := &fakeProxy{}
	good.addModule(t, "example.com/m", "v1.0.0", map[string]string{"go.mod": "module example.com/m\n"})
	empty, broken := &fakeProxy{}, &fakeProxy{fail: http.StatusInternalServerError}
	g, e, b := httptest.NewServer(good), httptest.NewServer(empty), httptest.NewServer(broken)
	defer g.Close()
	defer e.Close()
	defer b.Close()
	ctx := context.Background()
	for _, c := range []struct {
		list string
		ok   bool
	}{
		{e.URL + "," + g.URL, true},  // not found moves on after ","
		{b.URL + "," + g.URL, false}, // any other error stops after ","
		{b.URL + "|" + g.URL, true},  // but moves on after "|"
	} {
		p, err := NewProxy(c.list)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Info(ctx, "example.com/m", "v1.0.0")
		if (err == nil) != c.ok {
			t.Errorf("GOPROXY=%s: got %v, want success %v", c.list, err, c.ok)
		}
	}
	p, _ := NewProxy(e.URL)
	var nf *NotFoundError
	if _, err := p.Info(ctx, "example.com/m", "v1.0.0"); !errors.As(err, &nf) {
		t.Errorf("a module no proxy has: got %v, want a NotFoundError", err)
	}
}

func TestToolchainIsCheckedBeforeItIsExtracted(t *testing.T) {
	p := &fakeProxy{}
	goVersion := "go1.26.8"
	v := ToolchainVersion(goVersion)
	sum := p.addModule(t, ToolchainModule, v, map[string]string{
		"bin/go":                       "#!/bin/sh\necho fake go\n",
		"pkg/tool/linux_amd64/compile": "#!/bin/sh\n",
		"VERSION":                      goVersion + "\ntime 2026-01-01T00:00:00Z\n",
	})
	srv := httptest.NewServer(p)
	defer srv.Close()
	r := newTestResolver(t, Env{GOPROXY: srv.URL, GOSUMDB: "off"})
	ctx := context.Background()

	bad := Module{Path: ToolchainModule, Version: v, Sum: "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
	if _, err := r.Toolchain(ctx, bad, ""); err == nil || !strings.Contains(err.Error(), "hash mismatch: pinned "+bad.Sum+", the proxy served "+sum) {
		t.Errorf("a toolchain not matching its pin: got %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.Dir, "toolchain")); len(ents) != 0 {
		t.Errorf("a refused toolchain left %d entries in the cache", len(ents))
	}

	tc, err := r.Toolchain(ctx, Module{Path: ToolchainModule, Version: v, Sum: sum}, "")
	if err != nil {
		t.Fatal(err)
	}
	if tc.GoVersion != goVersion {
		t.Errorf("GoVersion = %s, want %s", tc.GoVersion, goVersion)
	}
	for _, f := range []string{"bin/go", "pkg/tool/linux_amd64/compile"} {
		fi, err := os.Stat(filepath.Join(tc.GOROOT, f))
		if err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s: %v, mode %v: want it executable", f, err, fi.Mode())
		}
	}
	hits := p.hits.Load()
	if tc2, err := r.Toolchain(ctx, Module{Path: ToolchainModule, Version: v, Sum: sum}, ""); err != nil || tc2.GOROOT != tc.GOROOT {
		t.Errorf("second Toolchain: %v, %v", tc2, err)
	}
	if p.hits.Load() != hits {
		t.Error("a cached toolchain was fetched again")
	}
	if _, err := r.Toolchain(ctx, Module{Path: ToolchainModule, Version: "v0.0.1-go1.26.8.darwin-arm64", Sum: sum}, ""); err == nil {
		t.Error("a toolchain for another platform: no error")
	}
}

// sumDB serves a checksum database that records sums, through the proxy.
func sumDB(t *testing.T, mux *http.ServeMux, sums map[string]string) string {
	t.Helper()
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 64)), "sum.test")
	if err != nil {
		t.Fatal(err)
	}
	db := sumdb.NewServer(sumdb.NewTestServer(skey, func(path, vers string) ([]byte, error) {
		s, ok := sums[path+"@"+vers]
		if !ok {
			return nil, os.ErrNotExist
		}
		return []byte(path + " " + vers + " " + s + "\n"), nil
	}))
	mux.HandleFunc("/sumdb/sum.test/supported", func(http.ResponseWriter, *http.Request) {})
	mux.Handle("/sumdb/sum.test/", http.StripPrefix("/sumdb/sum.test", db))
	return vkey
}

func TestMainModuleIsCheckedAgainstTheChecksumDatabase(t *testing.T) {
	p := &fakeProxy{}
	gomod := "module example.com/m\n\ngo 1.22\n"
	real := p.addModule(t, "example.com/m", "v1.0.0", map[string]string{"go.mod": gomod, "main.go": "package main\n\nfunc main() {}\n"})
	// The proxy serves other content than the module everyone gets.
	served := p.addModule(t, "example.com/m", "v1.0.0", map[string]string{"go.mod": gomod, "main.go": "package main\n\nfunc main() { steal() }\n"})
	mux := http.NewServeMux()
	vkey := sumDB(t, mux, map[string]string{"example.com/m@v1.0.0": real})
	mux.Handle("/", p)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	r := newTestResolver(t, Env{GOPROXY: srv.URL, GOSUMDB: vkey})
	_, err := r.FetchSource(ctx, "example.com/m", "v1.0.0", "")
	if err == nil || !strings.Contains(err.Error(), "SECURITY ERROR: example.com/m@v1.0.0: the module proxy served content with sum "+served+", but the checksum database sum.test records "+real) {
		t.Fatalf("a tampered main module: got %v", err)
	}
	// Nothing of it was kept: a second try fetches and refuses again.
	hits := p.hits.Load()
	if _, err := r.FetchSource(ctx, "example.com/m", "v1.0.0", ""); err == nil || p.hits.Load() == hits {
		t.Errorf("second try: %v (fetched again: %v)", err, p.hits.Load() != hits)
	}

	// GONOSUMDB and GOSUMDB=off take the proxy's word, as the go command does.
	for _, env := range []Env{{GOPROXY: srv.URL, GOSUMDB: vkey, GONOSUMDB: "example.com"}, {GOPROXY: srv.URL, GOSUMDB: "off"}} {
		src, err := newTestResolver(t, env).FetchSource(ctx, "example.com/m", "v1.0.0", "")
		if err != nil {
			t.Errorf("%+v: %v", env, err)
			continue
		}
		if src.Sum != served {
			t.Errorf("%+v: sum %s, want %s", env, src.Sum, served)
		}
		src.Close()
	}
}

func TestVersionQueries(t *testing.T) {
	p := &fakeProxy{}
	for _, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0-rc.1"} {
		gomod := "module example.com/m\n"
		if v == "v1.3.0-rc.1" {
			gomod += "\nretract v1.2.0 // broken\n"
		}
		p.addModule(t, "example.com/m", v, map[string]string{"go.mod": gomod})
	}
	p.addModule(t, "example.com/pre", "v0.1.0-alpha", map[string]string{})
	srv := httptest.NewServer(p)
	defer srv.Close()
	r := newTestResolver(t, Env{GOPROXY: srv.URL, GOSUMDB: "off"})
	ctx := context.Background()
	for _, c := range []struct{ path, query, want string }{
		{"example.com/m", "latest", "v1.1.0"}, // v1.2.0 is retracted, v1.3.0-rc.1 a pre-release
		{"example.com/m", "v1.0.0", "v1.0.0"},
		{"example.com/m", "v1.0", "v1.0.0"},
		{"example.com/pre", "latest", "v0.1.0-alpha"}, // only pre-releases
	} {
		got, err := r.Version(ctx, c.path, c.query)
		if err != nil || got != c.want {
			t.Errorf("Version(%s, %s) = %s, %v; want %s", c.path, c.query, got, err, c.want)
		}
	}
	if got, err := r.Upgrade(ctx, "example.com/m", "v1.0.0"); err != nil || got != "v1.1.0" {
		t.Errorf("Upgrade from v1.0.0 = %s, %v; want v1.1.0", got, err)
	}
	if got, err := r.Upgrade(ctx, "example.com/m", "v1.2.0"); err != nil || got != "v1.2.0" {
		t.Errorf("Upgrade from v1.2.0 = %s, %v; want no downgrade", got, err)
	}
	var nf *NotFoundError
	if _, err := r.Version(ctx, "example.com/m", "v1.9.0"); !errors.As(err, &nf) {
		t.Errorf("a version that does not exist: got %v", err)
	}
	if _, err := r.Version(ctx, "example.com/nope", "latest"); !errors.As(err, &nf) {
		t.Errorf("a module that does not exist: got %v", err)
	}
}

func TestToolchainGoVersion(t *testing.T) {
	g, p, err := ToolchainGoVersion("v0.0.1-go1.26.8.linux-amd64")
	if err != nil || g != "go1.26.8" || p != "linux-amd64" {
		t.Errorf("got %s %s %v", g, p, err)
	}
	for _, bad := range []string{"v1.0.0", "v0.0.1-gox.linux-amd64", "v0.0.1-go1.26.8"} {
		if _, _, err := ToolchainGoVersion(bad); err == nil {
			t.Errorf("ToolchainGoVersion(%s): no error", bad)
		}
	}
	e := &NeedsNewerGo{Module: "example.com/m@v1.0.0", Go: "go1.27", Toolchain: "go1.26.8"}
	if want := "hephc update golang.org/toolchain@v0.0.1-go1.27.0.linux-amd64"; !strings.HasSuffix(e.Error(), want) {
		t.Errorf("got %q, want it to end in %q", e.Error(), want)
	}
}
