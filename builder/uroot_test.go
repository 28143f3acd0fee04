package builder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/builder"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/internal/e2estore"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// TestImageIsReproducible realizes the example system's server image
// (system.cue: u-root's minimal commands, wireguard, attest-tool and the
// sentinel, heph's init and self-test, the gokrazy kernel; the
// workstation differs only in its command set and programs, and costs
// more to build) from nothing in a fresh store, compares it with a
// second build from nothing (cmd/hephc's shared realize of system.cue when
// the go command runs both packages, as CI does; else another fresh
// store: secondBuild) and checks that the
// standard library's go command caches (#GoStdCache and #GoStdVet, which
// the programs' go tests take), the busybox, the
// initramfs and the whole toplevel are bit-identical, that
// the busybox's build used the std cache (its log), the archive is what heph's init needs (sorted records, no times or
// owners, uinit, the services, programs and console files),
// and that realizing again does nothing. Two fresh stores fetch through
// one caching proxy, so the sources come from the network once.
func TestImageIsReproducible(t *testing.T) {
	if os.Getenv("HEPHC_E2E") != "1" {
		t.Skip("set HEPHC_E2E=1 to run: fetches the pinned toolchain and modules (about 400 MB) and builds the server image twice (several minutes)")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := lang.NewLoader(root).Load("system.cue")
	if err != nil {
		t.Fatal(err)
	}
	eg, err := eval.Build(cfg.Value, eval.Options{Attr: "images.server"})
	if err != nil {
		t.Fatal(lang.DiagnoseIn(root, err))
	}
	g := &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}, Origins: map[store.DrvHash]store.Origin{}}
	var initramfs, busybox, stdcache store.DrvHash
	for h, n := range eg.Nodes {
		g.Derivations[h] = n.Drv
		g.Origins[h] = store.Origin{Attr: n.Attr}
		switch n.Drv.Builder {
		case "builtin:uroot":
			initramfs = h
		case "builtin:uroot-busybox":
			busybox = h
		case "builtin:go-std-cache":
			stdcache = h
		}
	}
	top := eg.Roots["images.server"]
	stdvet := stdVetOf(t, eg, g)
	roots := []store.DrvHash{top, stdvet}
	proxy := newCachingProxy(t)
	opts := realize.Options{SourceDir: root, Getenv: func(k string) string {
		if k == "GOPROXY" {
			return proxy.URL
		}
		return ""
	}}

	ctx := context.Background()
	var stores [2]*store.Store
	stores[0] = openStore(t)
	t0 := time.Now()
	if _, err := realize.Realize(ctx, stores[0], g, roots, opts); err != nil {
		t.Fatalf("realize in store 1: %v", err)
	}
	t.Logf("store 1: realized the server image from nothing in %v", time.Since(t0).Round(time.Second))
	stores[1] = secondBuild(t, root, g.PathOf(top))
	if stores[1] == nil {
		stores[1] = openStore(t)
		t0 = time.Now()
		if _, err := realize.Realize(ctx, stores[1], g, roots, opts); err != nil {
			t.Fatalf("realize in store 2: %v", err)
		}
		t.Logf("store 2: realized the server image from nothing in %v", time.Since(t0).Round(time.Second))
	}
	for _, h := range []store.DrvHash{stdcache, stdvet, busybox, initramfs, top} {
		p := g.PathOf(h)
		a, b := stores[0].Physical(p), stores[1].Physical(p)
		ia, _, _ := stores[0].QueryPathInfo(ctx, p)
		ib, _, _ := stores[1].QueryPathInfo(ctx, p)
		if ia == nil || ib == nil || ia.ContentHash != ib.ContentHash {
			t.Errorf("%s: not the same content in both stores: %+v and %+v", p, ia, ib)
			continue
		}
		if h == stdcache || h == stdvet {
			continue // a go command cache (gostdcache.go): no initrd
		}
		for _, f := range []string{"initrd", "manifest.json"} {
			ba, err := os.ReadFile(filepath.Join(a, f))
			if err != nil {
				t.Fatal(err)
			}
			bb, _ := os.ReadFile(filepath.Join(b, f))
			if !bytes.Equal(ba, bb) {
				t.Errorf("%s/%s differs between the two stores (%d and %d bytes)", p, f, len(ba), len(bb))
			}
		}
	}

	// The busybox took packages of the standard library from the std
	// cache: u-root's -a is off and its flags are the std cache's
	// (uroot.go).
	blog, err := os.ReadFile(stores[0].LogPath(busybox))
	if err != nil {
		t.Fatal(err)
	}
	// The server's busybox used 687 entries with go1.26.8; with u-root's
	// -a and -gcflags=all=-l it used 265 (what the go command reads even
	// with -a).
	const minUsed = 500
	used := regexp.MustCompile(`(?m)^go cache: used ([0-9]+) of the [0-9]+ entries of input gostd$`).FindSubmatch(blog)
	if used == nil {
		t.Fatalf("the busybox's build log %s does not say how much of the std cache it used:\n%s", stores[0].LogPath(busybox), blog)
	}
	if n, _ := strconv.Atoi(string(used[1])); n < minUsed {
		t.Errorf("the busybox's build used %d entries of the std cache, want at least %d: it compiled the standard library again (log %s)", n, minUsed, stores[0].LogPath(busybox))
	}

	topDir := stores[0].Physical(g.PathOf(top))
	cpio, err := os.ReadFile(filepath.Join(topDir, builder.ToplevelInitrd))
	if err != nil {
		t.Fatal(err)
	}
	checkArchive(t, cpio)
	var m builder.Manifest
	b, _ := os.ReadFile(filepath.Join(topDir, builder.ToplevelManifest))
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range m.Packages {
		names = append(names, p.Name)
	}
	for _, want := range []string{"u-root-minimal", "wireguard", "attest-tool", "sentinel", "hephinit", "server-initramfs"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("the manifest's packages %v lack %s", names, want)
		}
	}

	res, err := realize.Realize(ctx, stores[0], g, roots, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Built)+len(res.Fetched) != 0 {
		t.Errorf("realizing again built %v and fetched %v; want nothing done", res.Built, res.Fetched)
	}
}

// stdVetOf returns vet's half of the std cache (#GoStdVet) that the go
// tests of eg's programs take (input gostdvet), adding it to g.
func stdVetOf(t *testing.T, eg *eval.Graph, g *store.Graph) store.DrvHash {
	t.Helper()
	tests, err := policy.Tests(eg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range tests {
		if ts.Drv == nil {
			continue // off
		}
		if h, ok := ts.Drv.Inputs["gostdvet"]; ok {
			if d := ts.Extra[h]; d != nil {
				g.Derivations[h] = d
				g.Origins[h] = store.Origin{Attr: ts.Attr + ".inputs.gostdvet"}
			}
			return h
		}
	}
	t.Fatal("no go test of the server image's programs takes vet's half of the std cache (gostdvet)")
	return store.DrvHash{}
}

// secondBuild returns the store that cmd/hephc's tests realized
// system.cue into from nothing (their systemStore), when the go command
// running this test runs them too (as CI's go test ./... does): it holds
// the server image built from nothing by another process, the second
// build to compare with, so CI builds it twice rather than three times.
// It waits for that realize to end. Else it returns nil.
func secondBuild(t *testing.T, repo string, top store.Path) *store.Store {
	t.Helper()
	r, err := e2estore.Wait(repo)
	if errors.Is(err, e2estore.ErrNone) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Release)
	st, err := store.Open(r.Store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, ok, err := st.QueryPathInfo(context.Background(), top); err != nil || !ok {
		t.Fatalf("cmd/hephc's realize of system.cue in %s has no server image %s (%v): the two evaluations differ", r.Store, top, err)
	}
	t.Logf("store 2: cmd/hephc's tests realized system.cue, the server image with it, from nothing in %s", r.Store)
	return st
}

// cpioRecord is a record of a newc archive.
type cpioRecord struct {
	name                  string
	mode, uid, gid, mtime int64
	data                  []byte
}

func readCpio(t *testing.T, b []byte) []cpioRecord {
	t.Helper()
	var recs []cpioRecord
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at offset %d", off)
		}
		field := func(i int) int64 {
			v, err := strconv.ParseInt(string(b[off+6+8*i:off+14+8*i]), 16, 64)
			if err != nil {
				t.Fatalf("bad header at %d: %v", off, err)
			}
			return v
		}
		r := cpioRecord{mode: field(1), uid: field(2), gid: field(3), mtime: field(5)}
		size, namesize := int(field(6)), int(field(11))
		off += 110
		r.name = string(b[off : off+namesize-1])
		off += namesize
		align()
		r.data = b[off : off+size]
		off += size
		align()
		if r.name == "TRAILER!!!" {
			return recs
		}
		recs = append(recs, r)
	}
}

func checkArchive(t *testing.T, b []byte) {
	t.Helper()
	recs := readCpio(t, b)
	byName := map[string]cpioRecord{}
	var names []string
	for _, r := range recs {
		if r.mtime != 0 || r.uid != 0 || r.gid != 0 {
			t.Errorf("%s: mtime %d, uid %d, gid %d; want zeros", r.name, r.mtime, r.uid, r.gid)
		}
		byName[r.name] = r
		names = append(names, r.name)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("records not sorted: %v", names)
	}
	link := func(name, want string) {
		if r, ok := byName[name]; !ok || r.mode&0o170000 != 0o120000 || string(r.data) != want {
			t.Errorf("%s: want a symbolic link to %s", name, want)
		}
	}
	link("init", "bbin/init")
	link("bin/uinit", "hephinit")
	for _, exe := range []string{"bbin/bb", "bin/hephinit", "bin/selftest", "bin/wireguard", "bin/attest-tool", "bin/sentinel", "bin/hephc"} {
		if r, ok := byName[exe]; !ok || r.mode&0o111 == 0 || !bytes.HasPrefix(r.data, []byte("\x7fELF")) {
			t.Errorf("%s: want an executable", exe)
		}
	}
	var svcs map[string]struct {
		Command string
		Restart string
	}
	if err := json.Unmarshal(byName["etc/heph/services.json"].data, &svcs); err != nil || svcs["selftest"].Command != "/bin/selftest" || svcs["selftest"].Restart != "on-failure" || svcs["sentinel"].Command != "/bin/sentinel" || svcs["sentinel"].Restart != "always" || svcs["serve"].Command != "/bin/hephc" || len(svcs) != 3 {
		t.Errorf("etc/heph/services.json: got %+v (%v), want the selftest, sentinel and serve (hephc) services", svcs, err)
	}
	var progs []struct{ Path, Package string }
	if err := json.Unmarshal(byName["etc/heph/programs.json"].data, &progs); err != nil || len(progs) != 7 {
		t.Errorf("etc/heph/programs.json: got %+v (%v), want 7 programs (attest-tool, gocryptfs, hephc, hephinit, selftest, sentinel, wireguard)", progs, err)
	}
	// The server has no console shell (system.cue): heph's init reads so.
	var console struct{ Shell *bool }
	if err := json.Unmarshal(byName["etc/heph/console.json"].data, &console); err != nil || console.Shell == nil || *console.Shell {
		t.Errorf("etc/heph/console.json: got %q (%v), want shell false", byName["etc/heph/console.json"].data, err)
	}
	if got := string(byName["etc/hostname"].data); got != "server\n" {
		t.Errorf("etc/hostname: got %q", got)
	}
}

// cachingProxy is a module proxy that fetches each file once from the
// user's GOPROXY (its first http entry, else proxy.golang.org) and then
// serves it from disk.
type cachingProxy struct {
	*httptest.Server
	upstream string
	dir      string
	mu       sync.Mutex
	locks    map[string]*sync.Mutex
}

func newCachingProxy(t *testing.T) *cachingProxy {
	up := "https://proxy.golang.org"
	for _, e := range strings.FieldsFunc(os.Getenv("GOPROXY"), func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(e, "http://") || strings.HasPrefix(e, "https://") {
			up = strings.TrimSuffix(e, "/")
			break
		}
	}
	p := &cachingProxy{upstream: up, dir: t.TempDir(), locks: map[string]*sync.Mutex{}}
	p.Server = httptest.NewServer(p)
	t.Cleanup(p.Close)
	return p
}

func (p *cachingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := filepath.Clean(r.URL.Path)
	if strings.Contains(name, "..") {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	l := p.locks[name]
	if l == nil {
		l = new(sync.Mutex)
		p.locks[name] = l
	}
	p.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	file := filepath.Join(p.dir, name)
	if _, err := os.Stat(file); err != nil {
		if code, err := p.fetch(name, file); err != nil {
			http.Error(w, err.Error(), code)
			return
		}
	}
	http.ServeFile(w, r, file)
}

func (p *cachingProxy) fetch(name, file string) (int, error) {
	resp, err := http.Get(p.upstream + name)
	if err != nil {
		return http.StatusBadGateway, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s%s: %s", p.upstream, name, resp.Status)
	}
	os.MkdirAll(filepath.Dir(file), 0o755)
	tmp := file + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return http.StatusInternalServerError, err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		return http.StatusBadGateway, err
	}
	return http.StatusOK, nil
}
