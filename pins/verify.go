package pins

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"hephc.dev/hephc/gomod"
)

// expectations are what the planned edits must yield, checked on the
// configuration evaluated again with the edits applied.
type expectations struct {
	modules  map[*Module]gomod.Module
	deps     map[*Program][]gomod.Module
	testDeps map[*Program][]gomod.Module
	hashes   map[string]string // attr → blake3 pin
	programs map[string]string // new programs: attr → summary
	dropped  map[string]bool   // attrs of removed table entries
}

func (e *edits) expect() *expectations {
	if e.expected == nil {
		e.expected = &expectations{
			modules:  make(map[*Module]gomod.Module),
			deps:     make(map[*Program][]gomod.Module),
			testDeps: make(map[*Program][]gomod.Module),
			hashes:   make(map[string]string),
			programs: make(map[string]string),
			dropped:  make(map[string]bool),
		}
	}
	return e.expected
}

// summaries describes every pin and program by attr, for comparison.
func (c *Config) summaries() map[string]string {
	s := make(map[string]string)
	for _, m := range c.Modules {
		s[m.Attr] = "module " + m.Module.String() + " " + m.Sum
	}
	for _, lf := range c.LocalFiles {
		s[lf.Attr] = "file " + lf.Hash
	}
	for _, mf := range c.ModFiles {
		s[mf.Attr] = "modfiles " + mf.Hash
	}
	for _, p := range c.allPrograms() {
		s[p.Attr] = programSummary(srcOf(p, p.Src), modulesOf(p.Deps), p.ModFiles)
		if p.Tests != nil && !p.Tests.Off {
			s[p.Attr+".tests.go.deps"] = testsSummary(modulesOf(p.Tests.Deps))
		}
	}
	for _, b := range c.Busyboxes {
		if b.Shares != nil {
			s[b.Attr] = "busybox " + s[b.Shares.Attr]
		}
	}
	return s
}

func modulesOf(ms []*Module) []gomod.Module {
	var out []gomod.Module
	for _, m := range ms {
		if m != nil {
			out = append(out, m.Module)
		}
	}
	return out
}

func programSummary(src gomod.Module, deps []gomod.Module, mf *ModFiles) string {
	var ds []string
	for _, d := range deps {
		ds = append(ds, d.String()+" "+d.Sum)
	}
	slices.Sort(ds)
	h := ""
	if mf != nil {
		h = " modfiles " + mf.Hash
	}
	return "program " + src.String() + " " + src.Sum + " deps " + strings.Join(ds, ", ") + h
}

// srcOf is what a summary says of p's source: the module (src, for one
// built from a pinned module), or the #LocalFile.
func srcOf(p *Program, src *Module) gomod.Module {
	if p.Local != nil {
		return gomod.Module{Path: "local " + p.Local.Attr}
	}
	return src.Module
}

// testsSummary describes the modules only a program's tests read.
func testsSummary(deps []gomod.Module) string {
	var ds []string
	for _, d := range deps {
		ds = append(ds, d.String()+" "+d.Sum)
	}
	slices.Sort(ds)
	return "tests deps " + strings.Join(slices.Compact(ds), ", ")
}

// expected is what summaries must say once the edits are applied.
func (c *Config) expected() map[string]string {
	e := c.plan()
	x := e.expect()
	mod := func(m *Module) gomod.Module {
		if n, ok := x.modules[m]; ok {
			return n
		}
		return m.Module
	}
	s := make(map[string]string)
	for _, m := range c.Modules {
		if !x.dropped[m.Attr] {
			n := mod(m)
			s[m.Attr] = "module " + n.String() + " " + n.Sum
		}
	}
	hash := func(attr, old string) string {
		if h, ok := x.hashes[attr]; ok {
			return h
		}
		return old
	}
	for _, lf := range c.LocalFiles {
		s[lf.Attr] = "file " + hash(lf.Attr, lf.Hash)
	}
	for _, mf := range c.ModFiles {
		s[mf.Attr] = "modfiles " + hash(mf.Attr, mf.Hash)
	}
	for _, p := range c.allPrograms() {
		deps, ok := x.deps[p]
		if !ok {
			for _, d := range p.Deps {
				if d != nil {
					deps = append(deps, mod(d))
				}
			}
		}
		var mf *ModFiles
		if p.ModFiles != nil {
			mf = &ModFiles{Hash: hash(p.ModFiles.Attr, p.ModFiles.Hash)}
		}
		var src gomod.Module
		if p.Src != nil {
			src = mod(p.Src)
		}
		s[p.Attr] = programSummary(srcOf(p, &Module{Module: src}), deps, mf)
		if p.Tests != nil && !p.Tests.Off {
			tdeps, ok := x.testDeps[p]
			if !ok {
				for _, d := range p.Tests.Deps {
					if d != nil {
						tdeps = append(tdeps, mod(d))
					}
				}
			}
			s[p.Attr+".tests.go.deps"] = testsSummary(tdeps)
		}
	}
	for _, b := range c.Busyboxes {
		if b.Shares != nil {
			s[b.Attr] = "busybox " + s[b.Shares.Attr]
		}
	}
	maps.Copy(s, x.programs)
	return s
}

// Verify evaluates the configuration again with the files out (new
// contents by absolute name) in a copy of its directory, checks that
// every pin and program is what the edits planned (nothing else moved),
// and returns the LockFile that records the result.
func (c *Config) Verify(args []string, out map[string][]byte) ([]byte, error) {
	if len(out) == 0 {
		return c.lockOf(), nil
	}
	lock, err := c.verify(args, out)
	if err != nil {
		return nil, err
	}
	return lock, nil
}

func (c *Config) verify(args []string, out map[string][]byte) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "hephc-verify-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return nil, err
	}
	for _, ent := range entries {
		name := filepath.Join(c.Dir, ent.Name())
		if b, ok := out[name]; ok {
			if err := os.WriteFile(filepath.Join(tmp, ent.Name()), b, 0o644); err != nil {
				return nil, err
			}
			continue
		}
		if err := os.Symlink(name, filepath.Join(tmp, ent.Name())); err != nil {
			return nil, err
		}
	}
	var newArgs []string
	for name, b := range out {
		if _, err := os.Lstat(filepath.Join(tmp, filepath.Base(name))); err != nil {
			if err := os.WriteFile(filepath.Join(tmp, filepath.Base(name)), b, 0o644); err != nil {
				return nil, err
			}
			newArgs = append(newArgs, filepath.Join(tmp, filepath.Base(name)))
		}
	}
	var loadArgs []string
	for _, a := range args {
		p := a
		if !filepath.IsAbs(p) {
			p = filepath.Join(c.Dir, p)
		}
		if filepath.Clean(p) == c.Dir {
			loadArgs = append(loadArgs, tmp)
		} else {
			loadArgs = append(loadArgs, filepath.Join(tmp, filepath.Base(p)))
		}
	}
	if len(loadArgs) > 0 {
		loadArgs = append(loadArgs, newArgs...)
	}
	if len(loadArgs) == 0 {
		loadArgs = []string{tmp}
	}
	fix := func(s string) string { return strings.ReplaceAll(s, tmp, c.Dir) }
	n, err := Load(tmp, loadArgs)
	if err != nil {
		return nil, fmt.Errorf("the changed configuration does not evaluate (nothing was written): %s", fix(err.Error()))
	}
	want, got := c.expected(), n.summaries()
	for _, attr := range slices.Sorted(maps.Keys(want)) {
		if got[attr] != want[attr] {
			return nil, fmt.Errorf("the changed configuration is not what was planned (nothing was written): %s is %q, want %q", attr, fix(got[attr]), want[attr])
		}
	}
	return n.lockOf(), nil
}
