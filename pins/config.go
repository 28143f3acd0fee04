// Package pins reads what a configuration pins — Go modules (#GoModule),
// the programs built from them (#GoProgram, and u-root's #Busybox, which
// shares a program's deps), local files (#LocalFile) and module graphs'
// go.mod files (#GoModFiles) — with where each pin's literals are written,
// and changes those literals in place.
package pins

import (
	"fmt"
	"slices"
	"strings"

	"cuelang.org/go/cue"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/cuepatch"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/gomod"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/localsrc"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// Config is a configuration's pins.
type Config struct {
	Dir   string                    // the configuration's directory
	Cwd   string                    // positions in errors are relative to it
	Files map[string]*cuepatch.File // its .cue files by absolute name
	// Value is the evaluated configuration, Graph its derivations.
	Value cue.Value
	Graph *eval.Graph

	Modules  []*Module // every #GoModule, by attr
	Programs []*Program
	// LocalPrograms are the programs built from a local module (a
	// #LocalFile directory with a go.mod): Src is nil, Local set.
	LocalPrograms []*Program
	LocalFiles    []*LocalFile
	ModFiles      []*ModFiles
	Busyboxes     []*Busybox

	byHash map[store.DrvHash]*Module
	table  *table
	edits  *edits
}

// Module is a pinned Go module.
type Module struct {
	Attr string // where it is defined (the best of its paths)
	gomod.Module
	Hash store.DrvHash
	// VersionLit and SumLit are where its version and sum are written;
	// nil when not as a literal of the configuration's files.
	VersionLit, SumLit *Lit
}

// Program is a Go program (#GoProgram) built from a Go module.
type Program struct {
	Attr     string
	Src      *Module // the main module
	Go       *Module // the toolchain
	Packages []string
	Deps     []*Module // in the order written
	// DepsList is where the deps list is written; nil when it is not a
	// list literal of the configuration's files.
	DepsList *List
	ModFiles *ModFiles  // its modfiles input, if any
	Pos      srcpos.Pos // where it is written
	Tests    *Tests     // its go test; nil when it has none
	Local    *LocalFile // its source, when it is local (Src is nil)
}

// Busybox is u-root's busybox (#Busybox): it compiles commands in the
// module src with the deps of a program (Shares).
type Busybox struct {
	Attr     string
	Src      *Module
	Commands []string
	Shares   *Program // the program whose deps it builds with; nil if none
}

// LocalFile is a file or tree beside the configuration (#LocalFile).
type LocalFile struct {
	Attr    string
	File    string // relative to the configuration's directory
	Filter  localsrc.Filter
	Hash    string
	HashLit *Lit
	node    *eval.Node
}

// ModFiles are a module graph's go.mod files (#GoModFiles).
type ModFiles struct {
	Attr    string
	Src     *Module
	Hash    string
	HashLit *Lit
}

// Load loads the configuration args name (relative to cwd) and reads its
// pins.
func Load(cwd string, args []string) (*Config, error) {
	cfg, err := lang.NewLoader(cwd).Load(args...)
	if err != nil {
		return nil, err
	}
	g, err := eval.Build(cfg.Value, eval.Options{})
	if err != nil {
		return nil, err
	}
	c := &Config{Dir: cfg.Dir, Cwd: cwd, Files: make(map[string]*cuepatch.File), Value: cfg.Value, Graph: g, byHash: make(map[store.DrvHash]*Module)}
	for _, name := range cfg.Files {
		f, err := cuepatch.Read(name)
		if err != nil {
			return nil, err
		}
		c.Files[name] = f
	}
	nodes := g.SortedNodes()
	slices.SortFunc(nodes, func(a, b *eval.Node) int { return strings.Compare(a.Attr, b.Attr) })
	for _, n := range nodes {
		if n.Drv.Builder == builtins.FetchGoMod {
			m := c.module(n)
			c.Modules = append(c.Modules, m)
			c.byHash[n.Hash] = m
		}
	}
	for _, n := range nodes {
		switch n.Drv.Builder {
		case builtins.FetchFile:
			lf := &LocalFile{Attr: n.Attr, Hash: n.Drv.OutputHash, node: n}
			lf.File, _ = n.Drv.Attrs["file"].(string)
			lf.Filter.Include, _ = stringList(n.Drv.Attrs["include"])
			lf.Filter.Exclude, _ = stringList(n.Drv.Attrs["exclude"])
			lf.HashLit = c.lit(n.Value().LookupPath(cue.ParsePath("hash")), lf.Hash)
			c.LocalFiles = append(c.LocalFiles, lf)
		case builtins.FetchGoModGraph:
			mf := &ModFiles{Attr: n.Attr, Src: c.byHash[n.Drv.Inputs["src"]], Hash: n.Drv.OutputHash}
			mf.HashLit = c.lit(n.Value().LookupPath(cue.ParsePath("hash")), mf.Hash)
			c.ModFiles = append(c.ModFiles, mf)
		}
	}
	for _, n := range nodes {
		switch n.Drv.Builder {
		case builtins.GoBuild:
			switch p := c.program(n); {
			case p == nil:
			case p.Src != nil:
				c.Programs = append(c.Programs, p)
			default:
				c.LocalPrograms = append(c.LocalPrograms, p)
			}
		case builtins.UrootBusybox:
			b := &Busybox{Attr: n.Attr, Src: c.byHash[n.Drv.Inputs["src"]]}
			b.Commands, _ = stringList(n.Drv.Attrs["commands"])
			c.Busyboxes = append(c.Busyboxes, b)
		}
	}
	for _, b := range c.Busyboxes {
		b.Shares = c.sharing(b)
	}
	if c.table, err = c.findTable(); err != nil {
		return nil, err
	}
	return c, nil
}

// rel formats a position relative to the working directory.
func (c *Config) rel(p srcpos.Pos) string { return p.Rel(c.Cwd) }

// module reads the #GoModule of node n.
func (c *Config) module(n *eval.Node) *Module {
	m := &Module{Attr: n.Attr, Hash: n.Hash}
	m.Path, _ = n.Drv.Attrs["module"].(string)
	m.Version, _ = n.Drv.Attrs["version"].(string)
	m.Sum = n.Drv.OutputHash
	v := n.Value()
	m.VersionLit = c.lit(v.LookupPath(cue.ParsePath("version")), m.Version)
	m.SumLit = c.lit(v.LookupPath(cue.ParsePath("sum")), m.Sum)
	return m
}

// program reads the #GoProgram of node n; nil when its source is neither
// a Go module nor a #LocalFile.
func (c *Config) program(n *eval.Node) *Program {
	src := c.byHash[n.Drv.Inputs["src"]]
	var local *LocalFile
	if src == nil {
		for _, lf := range c.LocalFiles {
			if lf.node.Hash == n.Drv.Inputs["src"] {
				local = lf
			}
		}
		if local == nil {
			return nil
		}
	}
	p := &Program{Attr: n.Attr, Src: src, Local: local, Go: c.byHash[n.Drv.Inputs["go"]], Pos: n.Pos}
	p.Packages, _ = stringList(n.Drv.Attrs["packages"])
	for i := 0; ; i++ {
		h, ok := n.Drv.Inputs[fmt.Sprintf("deps.%d", i)]
		if !ok {
			break
		}
		p.Deps = append(p.Deps, c.byHash[h]) // nil for a dep that is not a #GoModule
	}
	if h, ok := n.Drv.Inputs["modfiles"]; ok {
		for _, mf := range c.ModFiles {
			if node := c.Graph.Nodes[h]; node != nil && mf.Attr == node.Attr {
				p.ModFiles = mf
			}
		}
	}
	deps := n.Value().LookupPath(cue.ParsePath("inputs.deps"))
	if deps.Exists() {
		p.DepsList = c.list(deps)
	}
	p.Tests = c.tests(n)
	return p
}

// sharing finds the program whose deps a busybox builds with: the one
// built from the same module with the same deps.
func (c *Config) sharing(b *Busybox) *Program {
	var n *eval.Node
	for _, node := range c.Graph.Nodes {
		if node.Attr == b.Attr {
			n = node
		}
	}
	if n == nil {
		return nil
	}
	var deps []store.DrvHash
	for i := 0; ; i++ {
		h, ok := n.Drv.Inputs[fmt.Sprintf("deps.%d", i)]
		if !ok {
			break
		}
		deps = append(deps, h)
	}
	for _, p := range c.Programs {
		if p.Src != b.Src || len(p.Deps) != len(deps) {
			continue
		}
		same := true
		for i, d := range p.Deps {
			if d == nil || d.Hash != deps[i] {
				same = false
			}
		}
		if same {
			return p
		}
	}
	return nil
}

func stringList(v any) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("not a list")
	}
	var out []string
	for _, x := range l {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("not a list of strings")
		}
		out = append(out, s)
	}
	return out, nil
}

// allPrograms are the programs built from pinned and from local modules.
func (c *Config) allPrograms() []*Program {
	return append(slices.Clone(c.Programs), c.LocalPrograms...)
}

// ModulesAt returns the pinned modules of a path.
func (c *Config) ModulesAt(path string) []*Module {
	var out []*Module
	for _, m := range c.Modules {
		if m.Path == path {
			out = append(out, m)
		}
	}
	return out
}
