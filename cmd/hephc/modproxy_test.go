package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
	modzip "golang.org/x/mod/zip"

	"hephc.dev/hephc/gomod"
)

// testSumDB is the name of the scripts' checksum database.
const testSumDB = "sum.hephc.test"

// scriptProxies are the proxies scripts run, by work directory: a
// script's later modproxy commands change what its proxy serves, while
// its checksum database stays the same.
var scriptProxies = struct {
	sync.Mutex
	m map[string]*testProxy
}{m: make(map[string]*testProxy)}

// modproxy [-tamper PATH@VERSION]… serves, for the rest of the script, a
// module proxy and a checksum database made from the directory modules/
// of the script's work directory (modules/PATH@VERSION/ holds one module
// version's files; a module without a go.sum gets one listing the sums of
// everything its requirements reach), plus a toolchain module whose go
// runs the host's Go (and another for Go release futureGo). It sets GOPROXY, GOSUMDB and GONOSUMDB, and writes
// toolchain.cue pinning that toolchain as `toolchain`. A tampered module
// is served with an extra file: its sum no longer matches the one its
// dependents' go.sum and the checksum database record.
func modproxy(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! modproxy")
	}
	tampered := make(map[string]bool)
	for len(args) > 0 {
		if len(args) < 2 || args[0] != "-tamper" {
			ts.Fatalf("usage: modproxy [-tamper PATH@VERSION]…")
		}
		tampered[args[1]] = true
		args = args[2:]
	}
	work := ts.MkAbs(".")
	scriptProxies.Lock()
	p, running := scriptProxies.m[work]
	if !running {
		p = &testProxy{mods: make(map[string]*testModule)}
		scriptProxies.m[work] = p
	}
	scriptProxies.Unlock()
	if !running {
		ts.Check(p.load(ts.MkAbs("modules")))
		ts.Check(p.addToolchain(ts.MkAbs(".toolchain"), ""))
		ts.Check(p.addToolchain(ts.MkAbs(".toolchain-future"), futureGo))
		skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), testSumDB)
		ts.Check(err)
		db := sumdb.NewServer(sumdb.NewTestServer(skey, p.gosum))
		mux := http.NewServeMux()
		mux.HandleFunc("/sumdb/"+testSumDB+"/supported", func(w http.ResponseWriter, r *http.Request) {})
		mux.Handle("/sumdb/"+testSumDB+"/", http.StripPrefix("/sumdb/"+testSumDB, db))
		mux.HandleFunc("/", p.serve)
		srv := httptest.NewServer(mux)
		ts.Defer(func() {
			srv.Close()
			scriptProxies.Lock()
			delete(scriptProxies.m, work)
			scriptProxies.Unlock()
		})
		ts.Setenv("GOPROXY", srv.URL)
		ts.Setenv("GOSUMDB", vkey)
		ts.Setenv("GONOSUMDB", "")
		ts.Setenv("GOPRIVATE", "")
	}
	p.mu.Lock()
	for _, m := range p.mods {
		m.served = m.zip
	}
	for id := range tampered {
		m, ok := p.mods[id]
		if !ok {
			p.mu.Unlock()
			ts.Fatalf("modproxy: no module %s to tamper with", id)
		}
		ts.Check(m.tamper(ts.MkAbs(".tampered")))
	}
	p.mu.Unlock()
	tc := p.mods[gomod.ToolchainModule+"@"+p.toolchain]
	cue := fmt.Sprintf("package system\n\nimport \"hephc.dev/heph\"\n\ntoolchain: heph.#GoModule & {\n\tpath:    %q\n\tversion: %q\n\tsum:     %q\n}\n", gomod.ToolchainModule, p.toolchain, tc.sum)
	ts.Check(os.WriteFile(ts.MkAbs("toolchain.cue"), []byte(cue), 0o644))
}

// testProxy holds the modules a script's proxy serves, by PATH@VERSION.
type testProxy struct {
	mu        sync.Mutex // guards what the modules serve
	mods      map[string]*testModule
	toolchain string // the toolchain module's version
}

type testModule struct {
	mod          module.Version
	dir          string // its files
	zip, gomod   []byte
	sum, modSum  string // the true sums
	served       []byte // the zip served (tampered or not)
	requirements []module.Version
}

// load reads every module below root and makes its zip.
func (p *testProxy) load(root string) error {
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return filepath.SkipDir
			}
			return err
		}
		if !d.IsDir() || !strings.Contains(d.Name(), "@") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		modPath, version, _ := strings.Cut(filepath.ToSlash(rel), "@")
		m := &testModule{mod: module.Version{Path: modPath, Version: version}, dir: path}
		if m.gomod, err = os.ReadFile(filepath.Join(path, "go.mod")); err != nil {
			return err
		}
		f, err := modfile.Parse(rel+"/go.mod", m.gomod, nil)
		if err != nil {
			return err
		}
		for _, r := range f.Require {
			m.requirements = append(m.requirements, r.Mod)
		}
		p.mods[m.mod.String()] = m
		return filepath.SkipDir
	})
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range p.mods {
			if !yield(id) {
				return
			}
		}
	}) {
		if err := p.build(p.mods[id], nil); err != nil {
			return err
		}
	}
	return nil
}

// build makes a module's go.sum (unless it has one) and zip.
func (p *testProxy) build(m *testModule, visiting []string) error {
	if m.zip != nil {
		return nil
	}
	if slices.Contains(visiting, m.mod.String()) {
		return fmt.Errorf("modproxy: requirement cycle through %s", m.mod)
	}
	if _, err := os.Stat(filepath.Join(m.dir, "go.sum")); errors.Is(err, fs.ErrNotExist) {
		var lines []string
		seen := make(map[string]bool)
		var walk func(rs []module.Version) error
		walk = func(rs []module.Version) error {
			for _, r := range rs {
				dep, ok := p.mods[r.String()]
				if !ok || seen[r.String()] {
					continue
				}
				seen[r.String()] = true
				if err := p.build(dep, append(visiting, m.mod.String())); err != nil {
					return err
				}
				lines = append(lines, fmt.Sprintf("%s %s %s", r.Path, r.Version, dep.sum), fmt.Sprintf("%s %s/go.mod %s", r.Path, r.Version, dep.modSum))
				if err := walk(dep.requirements); err != nil {
					return err
				}
			}
			return nil
		}
		if err := walk(m.requirements); err != nil {
			return err
		}
		slices.Sort(lines)
		if len(lines) > 0 {
			if err := os.WriteFile(filepath.Join(m.dir, "go.sum"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
				return err
			}
		}
	}
	var zip bytes.Buffer
	if err := modzip.CreateFromDir(&zip, m.mod, m.dir); err != nil {
		return fmt.Errorf("modproxy: %s: %w", m.mod, err)
	}
	return m.finish(zip.Bytes())
}

// finish records a module's zip and its sums.
func (m *testModule) finish(zip []byte) error {
	tmp, err := os.CreateTemp("", "modproxy-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(zip); err != nil {
		return err
	}
	tmp.Close()
	if m.sum, err = dirhash.HashZip(tmp.Name(), dirhash.Hash1); err != nil {
		return err
	}
	if m.modSum, err = gomod.GoModSum(m.gomod); err != nil {
		return err
	}
	m.zip, m.served = zip, zip
	return nil
}

// tamper makes the proxy serve the module with one more file.
func (m *testModule) tamper(scratch string) error {
	dir := filepath.Join(scratch, m.mod.String())
	os.RemoveAll(dir)
	if err := os.CopyFS(dir, os.DirFS(m.dir)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "TAMPERED"), []byte("not what was published\n"), 0o644); err != nil {
		return err
	}
	var zip bytes.Buffer
	if err := modzip.CreateFromDir(&zip, m.mod, dir); err != nil {
		return err
	}
	m.served = zip.Bytes()
	return nil
}

// hostGOROOT is the GOROOT of the go command on PATH.
var hostGOROOT = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	return strings.TrimSpace(string(out)), err
})

// futureGo is the Go release of the proxy's second toolchain, which a
// script may update to.
const futureGo = "go1.99.0"

// addToolchain adds a toolchain module whose bin/go runs the host's go
// command: resolving runs it as it would run the real one, fetched,
// checked against its pin and extracted. It is for the host's Go release,
// the one toolchain.cue pins, unless goVersion names another.
func (p *testProxy) addToolchain(dir, goVersion string) error {
	goroot, err := hostGOROOT()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(goroot, "VERSION"))
	if err != nil {
		return err
	}
	if goVersion == "" {
		goVersion, _, _ = strings.Cut(string(b), "\n")
		goVersion = strings.TrimSpace(goVersion)
		p.toolchain = gomod.ToolchainVersion(goVersion)
	}
	m := &testModule{mod: module.Version{Path: gomod.ToolchainModule, Version: gomod.ToolchainVersion(goVersion)}, dir: dir, gomod: []byte("module " + gomod.ToolchainModule + "\n")}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	shim := fmt.Sprintf("#!/bin/sh\nGOROOT=%s exec %s \"$@\"\n", goroot, filepath.Join(goroot, "bin", "go"))
	if err := os.WriteFile(filepath.Join(dir, "bin", "go"), []byte(shim), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte(goVersion+"\n"), 0o644); err != nil {
		return err
	}
	var zip bytes.Buffer
	if err := modzip.CreateFromDir(&zip, m.mod, dir); err != nil {
		return err
	}
	if err := m.finish(zip.Bytes()); err != nil {
		return err
	}
	p.mods[m.mod.String()] = m
	return nil
}

// gosum gives the checksum database a module version's go.sum lines.
func (p *testProxy) gosum(path, vers string) ([]byte, error) {
	m, ok := p.mods[path+"@"+vers]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return fmt.Appendf(nil, "%s %s %s\n%s %s/go.mod %s\n", path, vers, m.sum, path, vers, m.modSum), nil
}

// serve answers the module proxy protocol.
func (p *testProxy) serve(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/")
	if esc, ok := strings.CutSuffix(rest, "/@latest"); ok {
		path, err := module.UnescapePath(esc)
		if v := p.versions(path, true); err == nil && len(v) > 0 {
			fmt.Fprintf(w, "{\"Version\":%q}\n", v[len(v)-1])
			return
		}
		http.NotFound(w, r)
		return
	}
	esc, file, ok := strings.Cut(rest, "/@v/")
	path, err := module.UnescapePath(esc)
	if !ok || err != nil {
		http.NotFound(w, r)
		return
	}
	if file == "list" {
		vs := p.versions(path, false)
		if len(vs) == 0 && len(p.versions(path, true)) == 0 {
			http.NotFound(w, r)
			return
		}
		for _, v := range vs {
			fmt.Fprintln(w, v)
		}
		return
	}
	ext := filepath.Ext(file)
	version, err := module.UnescapeVersion(strings.TrimSuffix(file, ext))
	m, found := p.mods[path+"@"+version]
	if err != nil || !found {
		http.Error(w, "not found: "+path+"@"+strings.TrimSuffix(file, ext)+": unknown revision", http.StatusNotFound)
		return
	}
	switch ext {
	case ".info":
		fmt.Fprintf(w, "{\"Version\":%q}\n", version)
	case ".mod":
		w.Write(m.gomod)
	case ".zip":
		p.mu.Lock()
		b := m.served
		p.mu.Unlock()
		w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

// versions lists a module's versions, sorted: tagged ones only, or all.
func (p *testProxy) versions(path string, all bool) []string {
	var vs []string
	for _, m := range p.mods {
		if m.mod.Path == path && (all || !module.IsPseudoVersion(m.mod.Version)) {
			vs = append(vs, m.mod.Version)
		}
	}
	semver.Sort(vs)
	return vs
}
