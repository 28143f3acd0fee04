package pins

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"cuelang.org/go/cue/ast"

	"hephc.dev/hephc/cuepatch"
	"hephc.dev/hephc/gomod"
)

// Output plans what the changes imply for the modules table — the new
// entries, and the removal of entries that only the deps lists changed
// here referred to and that nothing refers to any more — and returns the
// new content of every file that changes, by absolute name.
func (c *Config) Output(tableFile string) (map[string][]byte, []string, error) {
	e := c.plan()
	unused := c.unused()
	c.nameEntries(unused)
	removed, err := c.dropOrReuse(unused)
	if err != nil {
		return nil, nil, err
	}
	for _, render := range e.renders {
		if err := render(); err != nil {
			return nil, nil, err
		}
	}
	if err := c.insertEntries(tableFile); err != nil {
		return nil, nil, err
	}
	out := make(map[string][]byte)
	for name, f := range c.Files {
		if !f.Changed() {
			continue
		}
		b, err := f.Bytes()
		if err != nil {
			return nil, nil, err
		}
		out[name] = b
	}
	for name, f := range e.newFiles {
		b, err := f.Bytes()
		if err != nil {
			return nil, nil, err
		}
		out[name] = b
	}
	return out, removed, nil
}

// unused returns the keys of the table entries that deps lists changed
// here referred to and that nothing refers to any more.
func (c *Config) unused() []string {
	e := c.plan()
	if c.tableStruct() == nil || len(e.setDeps) == 0 && len(e.setTestDeps) == 0 {
		return nil
	}
	var unused []string
	for _, key := range slices.Sorted(mapKeys(c.table.entries)) {
		m := c.table.entries[key]
		wasDep, usedNow := false, false
		for _, p := range c.allPrograms() {
			lists := []depList{{p.Deps, e.finalDeps[p], e.setDeps[p]}}
			if p.Tests != nil {
				lists = append(lists, depList{p.Tests.Deps, e.finalTestDeps[p], e.setTestDeps[p]})
			}
			for _, l := range lists {
				if slices.Contains(l.have, m) && l.set {
					wasDep = true
				}
				deps := l.have
				if l.set {
					deps = l.final
				}
				if slices.Contains(deps, m) {
					usedNow = true
				}
			}
		}
		if !wasDep || usedNow || c.consumersOutsideDeps(m) || c.sourceOf(m) {
			continue
		}
		unused = append(unused, key)
	}
	return unused
}

// depList is a list of pins a program has (its deps or its tests'), what
// it ends up with, and whether that was planned.
type depList struct {
	have, final []*Module
	set         bool
}

// dropOrReuse deletes the unused entries, but for those whose key a new
// entry takes: those keep their place and comments, and get the new
// entry's version and sum. It returns the keys deleted.
func (c *Config) dropOrReuse(unused []string) ([]string, error) {
	e := c.plan()
	sl := c.tableStruct()
	var removed []string
	for _, key := range unused {
		m := c.table.entries[key]
		if n, reused := e.newEntries[key]; reused && m.VersionLit != nil && m.SumLit != nil {
			if err := c.SetModule(m, n.Version, n.Sum); err != nil {
				return nil, err
			}
			delete(e.newEntries, key)
			delete(e.expect().programs, TableField+"."+key)
			continue
		}
		ok, err := c.deleteField(sl, key)
		if err != nil {
			return nil, err
		}
		if ok {
			removed = append(removed, key)
			e.expect().dropped[m.Attr] = true
		}
	}
	return removed, nil
}

// sourceOf reports whether m is the source of a program.
func (c *Config) sourceOf(m *Module) bool {
	for _, p := range c.Programs {
		if p.Src == m {
			return true
		}
	}
	return false
}

// deleteField deletes the table's field key with its comments, when it
// has lines of its own.
func (c *Config) deleteField(sl *ast.StructLit, key string) (bool, error) {
	f := c.Files[c.table.file]
	src := f.Source()
	for _, el := range sl.Elts {
		fld, ok := el.(*ast.Field)
		if !ok || labelName(fld) != key {
			continue
		}
		start := fld.Pos().Offset()
		for _, cg := range ast.Comments(fld) {
			if cg.Pos().IsValid() && cg.Pos().Offset() < start {
				start = cg.Pos().Offset()
			}
		}
		ls := f.LineStart(start)
		end := fld.End().Offset()
		nl := bytes.IndexByte(src[end:], '\n')
		if nl < 0 || strings.TrimSpace(string(src[ls:start])) != "" || strings.Trim(string(src[end:end+nl]), " \t,") != "" {
			return false, nil // shares its line: left alone
		}
		return true, f.Delete(ls, end+nl+1)
	}
	return false, nil
}

func labelName(f *ast.Field) string {
	switch l := f.Label.(type) {
	case *ast.Ident:
		return l.Name
	case *ast.BasicLit:
		s := strings.Trim(l.Value, `"`)
		return s
	}
	return ""
}

// nameEntries names the planned new table entries; the keys of unused
// entries are free again, and so is a plain name whose other versions
// are all unused.
func (c *Config) nameEntries(removed []string) {
	e := c.plan()
	gone := make(map[string]bool)
	for _, k := range removed {
		gone[k] = true
	}
	others := func(m gomod.Module) bool {
		for k, x := range c.table.entries {
			if !gone[k] && x.Path == m.Path && x.Version != m.Version {
				return true
			}
		}
		for _, x := range e.pending {
			if x.Path == m.Path && x.Version != m.Version {
				return true
			}
		}
		return false
	}
	for _, id := range slices.Sorted(mapKeys(e.pending)) {
		d := e.pending[id]
		// The key (and comments) of the unused entry it replaces, when
		// that key names no version.
		if k := c.reusableKey(d, removed, others(d)); k != "" {
			e.newEntries[k], e.newKeys[id] = d, k
			continue
		}
		k := c.newKey(d, others(d), func(k string) (gomod.Module, bool) {
			if m, ok := c.table.entries[k]; ok && !gone[k] {
				return m.Module, true
			}
			if m, ok := e.newEntries[k]; ok {
				return m, true
			}
			return gomod.Module{}, c.table.keys[k] && !gone[k]
		})
		e.newEntries[k], e.newKeys[id] = d, k
	}
}

// versionedKey matches a key that names its module's version.
var versionedKey = regexp.MustCompile(`_(v\d+(_\d+)*|\d{8,})$`)

// reusableKey is the key of an unused entry of d's path that d can take
// (one that names no version, not taken by another new entry), or "".
func (c *Config) reusableKey(d gomod.Module, unused []string, otherVersions bool) string {
	if otherVersions {
		return ""
	}
	for _, k := range unused {
		if c.table.entries[k].Path != d.Path || versionedKey.MatchString(k) {
			continue
		}
		if _, taken := c.plan().newEntries[k]; !taken {
			return k
		}
	}
	return ""
}

// entryLine is how a table entry is written.
func entryLine(key string, m gomod.Module) string {
	return fmt.Sprintf("%s: {path: %q, version: %q, sum: %q}", key, m.Path, m.Version, m.Sum)
}

// insertEntries writes the planned new table entries into the table's
// struct literal, each before the first entry whose key sorts after it;
// without a table, a new one at the end of tableFile.
func (c *Config) insertEntries(tableFile string) error {
	e := c.plan()
	if len(e.newEntries) == 0 {
		return nil
	}
	keys := slices.Sorted(mapKeys(e.newEntries))
	for _, k := range keys {
		m := e.newEntries[k]
		e.expect().programs[TableField+"."+k] = "module " + m.String() + " " + m.Sum
	}
	sl := c.tableStruct()
	if sl == nil {
		return c.newTable(tableFile, keys)
	}
	f := c.Files[c.table.file]
	var fields []*ast.Field
	for _, el := range sl.Elts {
		if fld, ok := el.(*ast.Field); ok && labelName(fld) != "" {
			fields = append(fields, fld)
		}
	}
	if len(fields) == 0 {
		if len(ast.Comments(sl)) > 0 || len(sl.Elts) > 0 {
			return fmt.Errorf("%s: the %s struct has no entries to place new ones beside; add one by hand", c.table.file, TableField)
		}
		indent := f.Indent(sl.Lbrace.Offset())
		var b strings.Builder
		b.WriteString("{\n")
		for _, k := range keys {
			b.WriteString(indent + "\t" + entryLine(k, e.newEntries[k]) + "\n")
		}
		b.WriteString(indent + "}")
		return f.Replace(sl, b.String())
	}
	inserts := make(map[int]*strings.Builder)
	var offsets []int
	for _, k := range keys {
		at, indent := -1, ""
		for _, fld := range fields {
			if labelName(fld) > k {
				start := fld.Pos().Offset()
				for _, cg := range ast.Comments(fld) {
					if cg.Pos().IsValid() && cg.Pos().Offset() < start {
						start = cg.Pos().Offset()
					}
				}
				at, indent = f.LineStart(start), f.Indent(start)
				break
			}
		}
		if at < 0 {
			last := fields[len(fields)-1]
			end := last.End().Offset()
			nl := bytes.IndexByte(f.Source()[end:], '\n')
			if nl < 0 {
				return fmt.Errorf("%s: the %s struct ends without a newline after its last entry", c.table.file, TableField)
			}
			at, indent = end+nl+1, f.Indent(last.Pos().Offset())
		}
		b, ok := inserts[at]
		if !ok {
			b = &strings.Builder{}
			inserts[at] = b
			offsets = append(offsets, at)
		}
		b.WriteString(indent + entryLine(k, e.newEntries[k]) + "\n")
	}
	for _, at := range offsets {
		if err := f.Insert(at, inserts[at].String()); err != nil {
			return err
		}
	}
	return nil
}

// newTable appends a modules table holding keys to file.
func (c *Config) newTable(file string, keys []string) error {
	e := c.plan()
	f, err := c.fileForWriting(file)
	if err != nil {
		return err
	}
	heph, err := c.importName(f)
	if err != nil {
		return err
	}
	var b strings.Builder
	if !bytes.HasSuffix(f.Source(), []byte("\n")) && len(f.Source()) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("\n// The modules programs depend on, each pinned once (hephc add and\n// hephc update keep them).\n")
	fmt.Fprintf(&b, "%s: [string]: %s.#GoModule\n%s: {\n", TableField, heph, TableField)
	for _, k := range keys {
		b.WriteString("\t" + entryLine(k, e.newEntries[k]) + "\n")
	}
	b.WriteString("}\n")
	return f.Insert(len(f.Source()), b.String())
}

// fileForWriting returns the configuration's file name (absolute), or a
// new one in its directory, started with the configuration's package
// clause.
func (c *Config) fileForWriting(name string) (*cuepatch.File, error) {
	if f, ok := c.Files[name]; ok {
		return f, nil
	}
	e := c.plan()
	if f, ok := e.newFiles[name]; ok {
		return f, nil
	}
	if filepath.Dir(name) != c.Dir || !strings.HasSuffix(name, ".cue") {
		return nil, fmt.Errorf("%s: a configuration's files are .cue files in its directory, %s", name, c.Dir)
	}
	if _, err := os.Stat(name); err == nil {
		return nil, fmt.Errorf("%s is not one of the configuration's files (name the configuration's files, or its directory)", name)
	}
	pkg := ""
	for _, f := range c.Files {
		if p := f.Syntax().PackageName(); p != "" {
			pkg = p
		}
	}
	var src string
	if pkg != "" {
		src = "package " + pkg + "\n"
	}
	f, err := cuepatch.Parse(name, []byte(src))
	if err != nil {
		return nil, err
	}
	e.newFiles[name] = f
	return f, nil
}

// importName returns the name file f refers to the schema hephc.dev/heph
// by, adding the import when f has none.
func (c *Config) importName(f *cuepatch.File) (string, error) {
	e := c.plan()
	if e.imported[f] {
		return "heph", nil
	}
	for imp := range f.Syntax().ImportSpecs() {
		if strings.Trim(imp.Path.Value, `"`) == SchemaImport {
			if imp.Name != nil {
				return imp.Name.Name, nil
			}
			return "heph", nil
		}
	}
	at := 0
	if pkg := f.Syntax().Decls; len(pkg) > 0 {
		for _, d := range pkg {
			if p, ok := d.(*ast.Package); ok {
				at = p.End().Offset()
			}
		}
	}
	if e.imported == nil {
		e.imported = make(map[*cuepatch.File]bool)
	}
	e.imported[f] = true
	return "heph", f.Insert(at, "\n\nimport \""+SchemaImport+"\"")
}

// SchemaImport is the import path of hephc's schema.
const SchemaImport = "hephc.dev/heph"

// NewEntries are the keys of the modules table's planned new entries.
func (c *Config) NewEntries() []string {
	if c.edits == nil {
		return nil
	}
	return slices.Sorted(mapKeys(c.edits.newEntries))
}
