package pins

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"hephc.dev/hephc/gomod"
)

// TableField is the top-level field whose struct holds the modules that
// programs depend on, each pinned once: modules: KEY: {path, version, sum}.
const TableField = "modules"

// table is the configuration's TableField: where its struct literal is
// written and which pin each key holds.
type table struct {
	file    string // empty when the configuration has no table yet
	lbrace  int    // offset of the struct literal's '{'
	entries map[string]*Module
	keys    map[string]bool // every key, pins or not
}

// findTable finds the struct literal of the table that holds its entries.
func (c *Config) findTable() (*table, error) {
	t := &table{entries: make(map[string]*Module), keys: make(map[string]bool)}
	v := c.Value.LookupPath(cue.MakePath(cue.Str(TableField)))
	if !v.Exists() {
		return t, nil
	}
	it, err := v.Fields()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", TableField, err)
	}
	for it.Next() {
		t.keys[it.Selector().Unquoted()] = true
		e := it.Value()
		var path, version, sum string
		e.LookupPath(cue.ParsePath("path")).Decode(&path)
		e.LookupPath(cue.ParsePath("version")).Decode(&version)
		e.LookupPath(cue.ParsePath("sum")).Decode(&sum)
		for _, m := range c.Modules {
			if m.Path == path && m.Version == version && m.Sum == sum {
				t.entries[it.Selector().Unquoted()] = m
			}
		}
	}
	// The literal: the one of the field's conjuncts with the most entries.
	best := -1
	c.visitAll(v, 0, func(n ast.Node) {
		if f, ok := n.(*ast.Field); ok {
			n = f.Value
		}
		sl, ok := n.(*ast.StructLit)
		if !ok || !sl.Lbrace.IsValid() {
			return
		}
		if _, own := c.Files[sl.Lbrace.Filename()]; !own {
			return
		}
		count := 0
		for _, el := range sl.Elts {
			if f, ok := el.(*ast.Field); ok {
				if _, ok := f.Label.(*ast.Ident); ok {
					count++
				}
			}
		}
		if count > best {
			best, t.file, t.lbrace = count, sl.Lbrace.Filename(), sl.Lbrace.Offset()
		}
	})
	return t, nil
}

// TableFile is the file that holds the modules table's entries; "" when
// the configuration has no table.
func (c *Config) TableFile() string { return c.table.file }

// visitAll shows f the syntax of v and of every operand of its
// unifications.
func (c *Config) visitAll(v cue.Value, depth int, f func(ast.Node)) {
	c.visit(v, depth, func(n ast.Node) bool { f(n); return false })
}

// structAt returns the table's struct literal in its file.
func (c *Config) tableStruct() *ast.StructLit {
	f := c.Files[c.table.file]
	if f == nil {
		return nil
	}
	n := f.NodeAt(c.table.lbrace, func(n ast.Node) bool { _, ok := n.(*ast.StructLit); return ok })
	sl, _ := n.(*ast.StructLit)
	return sl
}

// tableKey returns the key of m in the table, if it is there.
func (c *Config) tableKey(m *Module) (string, bool) {
	for _, k := range slices.Sorted(mapKeys(c.table.entries)) {
		if c.table.entries[k] == m {
			return k, true
		}
	}
	return "", false
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

var identRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*$`)

var cueKeywords = map[string]bool{
	"package": true, "import": true, "for": true, "in": true, "if": true,
	"let": true, "true": true, "false": true, "null": true, "func": true,
}

// newKey names a new table entry for m, as the table's keys are named: the
// module's last path element (golang.org/x/NAME as x_NAME); with its
// owner when another module has that name; with its version when the
// table pins another version of the module.
func (c *Config) newKey(m gomod.Module, otherVersions bool, taken func(string) (gomod.Module, bool)) string {
	elems := strings.Split(m.Path, "/")
	if pre, _, ok := module.SplitPathVersion(m.Path); ok && pre != m.Path && elems[0] != "gopkg.in" {
		elems = strings.Split(pre, "/")
	}
	base := elems[len(elems)-1]
	switch {
	case len(elems) == 3 && elems[0] == "golang.org" && elems[1] == "x":
		base = "x_" + base
	case elems[0] == "gopkg.in":
		base = strings.Replace(base, ".v", "_v", 1)
	}
	owner := ""
	if len(elems) >= 2 {
		owner = elems[len(elems)-2]
	}
	candidates := []string{sanitize(base), sanitize(owner + "_" + base)}
	suffix := versionSuffix(m.Version)
	for _, cand := range candidates {
		other, ok := taken(cand)
		if !ok {
			if otherVersions {
				continue // each version names itself
			}
			return cand
		}
		if other.Path == m.Path {
			break
		}
	}
	for _, cand := range candidates {
		if _, ok := taken(cand + "_" + suffix); !ok {
			return cand + "_" + suffix
		}
	}
	for i := 2; ; i++ {
		k := fmt.Sprintf("%s_%s_%d", candidates[0], suffix, i)
		if _, ok := taken(k); !ok {
			return k
		}
	}
}

// sanitize makes s a CUE identifier.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	k := strings.Trim(b.String(), "_")
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		k = "m_" + k
	}
	if cueKeywords[k] {
		k += "_mod"
	}
	return k
}

// versionSuffix is how a key names a version: v0.45.0 → v0_45_0, a
// pseudo-version by its date (20240919).
func versionSuffix(v string) string {
	if module.IsPseudoVersion(v) {
		if t, err := module.PseudoVersionTime(v); err == nil {
			return t.Format("20060102")
		}
	}
	v = strings.TrimSuffix(semver.Canonical(v), "+incompatible")
	return sanitize(strings.ReplaceAll(v, ".", "_"))
}
