package pins

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/cuepatch"
	"hephc.dev/hephc/gomod"
	"hephc.dev/hephc/srcpos"
)

// edits is what is planned beyond the files' own edits: new table
// entries and the deps each program ends up with. Text that refers to a
// new entry is written by a render function once Output has named it.
type edits struct {
	pending    map[string]gomod.Module // new table entries by path@version
	newEntries map[string]gomod.Module // by key, once named
	newKeys    map[string]string       // path@version → key, once named
	renders    []func() error
	finalDeps  map[*Program][]*Module // programs whose deps were set (nil for a new entry)
	setDeps    map[*Program]bool
	// finalTestDeps and setTestDeps are the same for tests.go.deps.
	finalTestDeps map[*Program][]*Module
	setTestDeps   map[*Program]bool
	newFiles      map[string]*cuepatch.File
	imported      map[*cuepatch.File]bool // files given the schema's import
	corrected     []*Module               // pins whose sum a go.sum corrected
	expected      *expectations
}

func (c *Config) plan() *edits {
	if c.edits == nil {
		c.edits = &edits{
			pending:       make(map[string]gomod.Module),
			newEntries:    make(map[string]gomod.Module),
			newKeys:       make(map[string]string),
			finalDeps:     make(map[*Program][]*Module),
			setDeps:       make(map[*Program]bool),
			finalTestDeps: make(map[*Program][]*Module),
			setTestDeps:   make(map[*Program]bool),
			newFiles:      make(map[string]*cuepatch.File),
		}
	}
	return c.edits
}

// Corrections describes the pins whose sums a main module's go.sum (the
// trust root) corrected.
func (c *Config) Corrections() []string {
	var out []string
	if c.edits == nil {
		return nil
	}
	for _, m := range c.edits.corrected {
		out = append(out, fmt.Sprintf("%s: %s sum %s → %s (the main module's go.sum)", m.Attr, m.Module, m.Sum, c.edits.expect().modules[m].Sum))
	}
	return out
}

// ref is the text of a reference to a pin: fixed, or to a new entry of
// the modules table (by path@version) not yet named.
type ref struct{ text, entry string }

// render is the reference's text once new entries are named.
func (e *edits) render(r ref) string {
	if r.entry != "" {
		return TableField + "." + e.newKeys[r.entry]
	}
	return r.text
}

// renderList is the text of a deps list of refs: sorted, each once.
func (e *edits) renderList(refs []ref) []string {
	var texts []string
	for _, r := range refs {
		texts = append(texts, e.render(r))
	}
	slices.Sort(texts)
	return slices.Compact(texts)
}

// SetModule changes the version and sum of a pinned module where they
// are written.
func (c *Config) SetModule(m *Module, version, sum string) error {
	want := gomod.Module{Path: m.Path, Version: version, Sum: sum}
	if set, ok := c.plan().expect().modules[m]; ok {
		if set != want {
			return fmt.Errorf("%s: planned as both %s %s and %s %s", m.Attr, set, set.Sum, want, want.Sum)
		}
		return nil
	}
	if m.Version == version && m.Sum == sum {
		return nil
	}
	if m.VersionLit == nil || m.SumLit == nil {
		return fmt.Errorf("%s (%s@%s): its version and sum are not string literals of the configuration's files; change them there by hand", m.Attr, m.Path, m.Version)
	}
	c.plan().expect().modules[m] = gomod.Module{Path: m.Path, Version: version, Sum: sum}
	if err := c.Files[m.VersionLit.File].ReplaceString(m.VersionLit.Offset, m.Version, version); err != nil {
		return err
	}
	return c.Files[m.SumLit.File].ReplaceString(m.SumLit.Offset, m.Sum, sum)
}

// SetHash changes a blake3 pin where it is written.
func (c *Config) SetHash(attr string, l *Lit, hash string) error {
	if l == nil {
		return fmt.Errorf("%s: its hash is not a string literal of the configuration's files; change it there by hand", attr)
	}
	c.plan().expect().hashes[attr] = hash
	return c.Files[l.File].ReplaceString(l.Offset, l.Value, hash)
}

// SetDeps makes p's deps list exactly deps, referring to the modules
// already pinned where it can (keeping the text of its elements that still
// hold) and to new entries of the modules table otherwise.
func (c *Config) SetDeps(p *Program, deps []gomod.Module) error {
	e := c.plan()
	final, err := c.setList(p.Attr, "deps", p.Deps, p.DepsList, p.Pos, deps)
	if err != nil || final == nil && len(deps) == 0 && len(p.Deps) == 0 {
		return err
	}
	e.setDeps[p], e.finalDeps[p] = true, final
	e.expect().deps[p] = deps
	return nil
}

// SetTestDeps makes the list of modules only p's tests read (its
// tests.go.deps) exactly deps, as SetDeps does for its deps.
func (c *Config) SetTestDeps(p *Program, deps []gomod.Module) error {
	t := p.Tests
	if t == nil || t.Off {
		return nil
	}
	e := c.plan()
	if t.DepsList == nil && len(deps) > 0 && !sameModules(t.Deps, deps) {
		return fmt.Errorf("%s.tests.go: its tests read %s, which its build does not: write its tests as tests: go: {packages: [...], deps: []} (at %s) for hephc to fill deps", p.Attr, modulesList(deps), t.Pos)
	}
	final, err := c.setList(p.Attr+".tests.go", "deps", t.Deps, t.DepsList, p.Pos, deps)
	if err != nil {
		return err
	}
	e.setTestDeps[p], e.finalTestDeps[p] = true, final
	e.expect().testDeps[p] = deps
	return nil
}

func modulesList(ms []gomod.Module) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.String())
	}
	return strings.Join(s, ", ")
}

// setList plans the list literal at list (the field what of attr, whose
// pins are have) to hold exactly deps and returns the pins it ends up
// referring to (nil for a new entry).
func (c *Config) setList(attr, what string, have []*Module, list *List, pos srcpos.Pos, deps []gomod.Module) ([]*Module, error) {
	e := c.plan()
	if list == nil {
		if len(have) == 0 && len(deps) == 0 {
			return nil, nil
		}
		if sameModules(have, deps) {
			return have, nil
		}
		return nil, fmt.Errorf("%s: its %s are not a list literal of the configuration's files (at %s); write them as one", attr, what, c.rel(pos))
	}
	f := c.Files[list.File]
	ll, _ := f.NodeAt(list.Offset, isList).(*ast.ListLit)
	if ll == nil {
		return nil, fmt.Errorf("%s: no list at %s", attr, c.rel(list.Pos))
	}
	if slices.ContainsFunc(ll.Elts, func(el ast.Expr) bool { _, ok := el.(*ast.Comprehension); return ok }) {
		// A list a comprehension makes (hephc's own deps, from the
		// generated hephcModules) is kept by whatever generates it.
		if sameModules(have, deps) {
			return have, nil
		}
		return nil, fmt.Errorf("%s: its %s should be %s, but they are made by a comprehension (at %s), which hephc update does not rewrite: change what it iterates over", attr, what, modulesList(deps), c.rel(list.Pos))
	}
	kept := make([]string, len(have))
	if len(ll.Elts) == len(have) {
		for i, el := range ll.Elts {
			switch el.(type) {
			case *ast.Comprehension, *ast.Ellipsis:
				kept = make([]string, len(have))
			default:
				kept[i] = string(f.Source()[el.Pos().Offset():el.End().Offset()])
			}
		}
	}
	var refs []ref
	final := []*Module{}
	for _, d := range deps {
		var r ref
		var target *Module
		for i, pd := range have {
			if pd != nil && pd.Module == d && kept[i] != "" {
				r, target = ref{text: kept[i]}, pd
			}
		}
		if r.text == "" {
			var err error
			if r, target, err = c.refFor(attr, d); err != nil {
				return nil, err
			}
		}
		refs = append(refs, r)
		final = append(final, target)
	}
	var old []string
	for _, el := range ll.Elts {
		old = append(old, string(f.Source()[el.Pos().Offset():el.End().Offset()]))
	}
	e.renders = append(e.renders, func() error {
		texts := e.renderList(refs)
		if slices.Equal(old, texts) {
			return nil
		}
		return f.Replace(ll, formatList(f, ll, texts))
	})
	return final, nil
}

// refFor is the reference from the inputs of the program at attr to the
// pin of d: one the configuration has, or a new entry of the table.
func (c *Config) refFor(attr string, d gomod.Module) (ref, *Module, error) {
	m, err := c.pinOf(d)
	if err != nil {
		return ref{}, nil, err
	}
	if m != nil {
		text, err := c.refTo(attr, m)
		return ref{text: text}, m, err
	}
	if err := c.checkShadow(attr, TableField); err != nil {
		return ref{}, nil, err
	}
	c.plan().pending[d.String()] = d
	return ref{entry: d.String()}, nil, nil
}

func isList(n ast.Node) bool { _, ok := n.(*ast.ListLit); return ok }

func sameModules(have []*Module, want []gomod.Module) bool {
	if len(have) != len(want) {
		return false
	}
	got := make([]gomod.Module, len(have))
	for i, m := range have {
		if m == nil {
			return false
		}
		got[i] = m.Module
	}
	slices.SortFunc(got, func(a, b gomod.Module) int { return strings.Compare(a.String(), b.String()) })
	w := slices.Clone(want)
	slices.SortFunc(w, func(a, b gomod.Module) int { return strings.Compare(a.String(), b.String()) })
	return slices.Equal(got, w)
}

// pinOf returns the configuration's pin of d's path and version: an entry
// of the modules table first. A pin of that version with another sum is
// an error: the main module's go.sum and the configuration disagree.
func (c *Config) pinOf(d gomod.Module) (*Module, error) {
	var best *Module
	for _, m := range c.Modules {
		if m.Path != d.Path || m.Version != d.Version {
			continue
		}
		if m.Sum != d.Sum {
			// The main module's go.sum (or the checksum database, for a
			// source) is the trust root: the pin is corrected.
			if m.SumLit == nil {
				return nil, fmt.Errorf("%s pins %s@%s with sum %s, but the main module's go.sum says %s", m.Attr, d.Path, d.Version, m.Sum, d.Sum)
			}
			if err := c.SetModule(m, d.Version, d.Sum); err != nil {
				return nil, err
			}
			e := c.plan()
			if !slices.Contains(e.corrected, m) {
				e.corrected = append(e.corrected, m)
			}
		}
		_, inTable := c.tableKey(m)
		_, bestInTable := "", false
		if best != nil {
			_, bestInTable = c.tableKey(best)
		}
		if best == nil || inTable && !bestInTable || inTable == bestInTable && len(m.Attr) < len(best.Attr) {
			best = m
		}
	}
	return best, nil
}

// refTo is the reference text that names pin m from inside the inputs of
// the program at attr.
func (c *Config) refTo(attr string, m *Module) (string, error) {
	if k, ok := c.tableKey(m); ok {
		return c.refToKey(attr, k)
	}
	sels := cue.ParsePath(m.Attr).Selectors()
	if len(sels) == 0 || sels[0].LabelType() != cue.StringLabel || !identRE.MatchString(sels[0].String()) {
		return "", fmt.Errorf("%s: a program's deps cannot refer to it by name: pin %s@%s in %s", m.Attr, m.Path, m.Version, TableField)
	}
	var b strings.Builder
	b.WriteString(sels[0].String())
	for _, s := range sels[1:] {
		switch {
		case s.LabelType() == cue.StringLabel && identRE.MatchString(s.String()):
			b.WriteString("." + s.String())
		case s.LabelType() == cue.StringLabel:
			b.WriteString("[" + strconv.Quote(s.Unquoted()) + "]")
		case s.LabelType() == cue.IndexLabel:
			b.WriteString("[" + s.String() + "]")
		default:
			return "", fmt.Errorf("%s: a program's deps cannot refer to it by name: pin %s@%s in %s", m.Attr, m.Path, m.Version, TableField)
		}
	}
	return b.String(), c.checkShadow(attr, sels[0].String())
}

func (c *Config) refToKey(attr, key string) (string, error) {
	return TableField + "." + key, c.checkShadow(attr, TableField)
}

// checkShadow refuses a reference whose first name a field between the
// program's inputs and the top level would capture.
func (c *Config) checkShadow(attr, first string) error {
	if attr == "" {
		return nil
	}
	sels := append(cue.ParsePath(attr).Selectors(), cue.Str("inputs"))
	for i := len(sels); i >= 1; i-- {
		scope := cue.MakePath(sels[:i]...)
		if c.Value.LookupPath(scope).LookupPath(cue.MakePath(cue.Str(first))).Exists() {
			return fmt.Errorf("%s: a reference to %s from its deps would mean %s.%s: rename that field", attr, first, scope, first)
		}
	}
	return nil
}

// listWidth is the width lists are filled to, tabs counting 4.
const listWidth = 80

// formatList lays out a list of references as the configuration's deps
// lists are: on one line if it was and still fits, else one indented
// line after another, filled to listWidth, each ending in a comma.
func formatList(f *cuepatch.File, ll *ast.ListLit, elems []string) string {
	start := ll.Lbrack.Offset()
	prefix := string(f.Source()[f.LineStart(start):start])
	one := "[" + strings.Join(elems, ", ") + "]"
	if len(elems) == 0 || ll.Lbrack.Line() == ll.Rbrack.Line() && width(prefix)+len(one) <= listWidth {
		return one
	}
	return fillList(f.Indent(start), elems)
}

// fillList writes a list of references on lines of their own below a line
// indented by indent, filled to listWidth, each ending in a comma.
func fillList(indent string, elems []string) string {
	if len(elems) == 0 {
		return "[]"
	}
	inner := indent + "\t"
	var b strings.Builder
	b.WriteString("[\n")
	line := inner
	for _, el := range elems {
		item := el + ","
		if line != inner && width(line)+1+len(item) > listWidth {
			b.WriteString(line + "\n")
			line = inner
		}
		if line != inner {
			line += " "
		}
		line += item
	}
	b.WriteString(line + "\n" + indent + "]")
	return b.String()
}

// width is the columns text takes, a tab counting 4.
func width(s string) int {
	return len(s) + 3*strings.Count(s, "\t")
}

// consumersOutsideDeps reports whether anything but programs' and
// busyboxes' deps lists refers to m.
func (c *Config) consumersOutsideDeps(m *Module) bool {
	for _, n := range c.Graph.Nodes {
		for name, h := range n.Drv.Inputs {
			if h != m.Hash {
				continue
			}
			// The deps of a program (built from a pinned module or a local
			// one, like system/gocryptfs) or of a busybox are planned anew
			// when update resolves it, and kept as written when it does not.
			tracked := n.Drv.Builder == builtins.UrootBusybox || n.Drv.Builder == builtins.GoBuild
			if strings.HasPrefix(name, "deps.") && tracked {
				continue
			}
			return true
		}
	}
	return false
}
