package defs_test

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/load"

	_ "hephc.dev/hephc/builder" // registers the built-in builders with the sandbox
	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/sandbox"
)

// schema loads the embedded schema on its own, as one package: its value
// and its files' syntax, in the order of their names.
func schema(t *testing.T) (cue.Value, []*ast.File) {
	t.Helper()
	dir := t.TempDir()
	overlay := make(map[string]load.Source)
	var args []string
	for name, b := range defs.Files() {
		overlay[filepath.Join(dir, name)] = load.FromBytes(b)
	}
	for _, name := range defs.Names() {
		args = append(args, filepath.Join(dir, name))
	}
	insts := load.Instances(args, &load.Config{Dir: dir, Overlay: overlay})
	if len(insts) != 1 || insts[0].Err != nil {
		t.Fatalf("loading the schema: %d instances, error %v", len(insts), insts[0].Err)
	}
	v := cuecontext.New().BuildInstance(insts[0])
	if err := v.Err(); err != nil {
		t.Fatalf("building the schema: %v", err)
	}
	return v, sortedFiles(insts[0])
}

func sortedFiles(inst *build.Instance) []*ast.File {
	files := slices.Clone(inst.Files)
	slices.SortFunc(files, func(a, b *ast.File) int { return strings.Compare(a.Filename, b.Filename) })
	return files
}

// schemaBuiltins returns the schema's definitions whose builder is a
// built-in one, in the schema's order (files by name, then by line), with
// the builder of each.
func schemaBuiltins(t *testing.T, v cue.Value, files []*ast.File) (defNames []string, builder map[string]string) {
	t.Helper()
	builder = make(map[string]string)
	for _, f := range files {
		for _, decl := range f.Decls {
			field, ok := decl.(*ast.Field)
			if !ok {
				continue
			}
			name, _, err := ast.LabelName(field.Label)
			if err != nil || !strings.HasPrefix(name, "#") {
				continue
			}
			b, err := v.LookupPath(cue.MakePath(cue.Def(name), cue.Str("builder"))).String()
			if err != nil || !builtins.IsBuiltin(b) {
				continue // not a derivation, or one whose builder is the user's
			}
			if refines(v, defNames, builder, name, b) {
				continue
			}
			defNames = append(defNames, name)
			builder[name] = b
		}
	}
	return defNames, builder
}

// refines reports whether definition name is an instance of an earlier
// one with the same builder (#GoStdVet of #GoStdCache): a refinement of
// that builtin's definition, not a builtin of its own.
func refines(v cue.Value, earlier []string, builder map[string]string, name, b string) bool {
	for _, e := range earlier {
		if builder[e] == b && v.LookupPath(cue.MakePath(cue.Def(e))).Subsume(v.LookupPath(cue.MakePath(cue.Def(name)))) == nil {
			return true
		}
	}
	return false
}

func TestTableHasEveryBuiltinOfTheSchema(t *testing.T) {
	v, files := schema(t)
	defNames, builder := schemaBuiltins(t, v, files)
	if len(defNames) == 0 {
		t.Fatal("found no definition with a built-in builder in the schema")
	}
	var tableDefs []string
	for _, b := range builtins.All {
		tableDefs = append(tableDefs, b.Definition)
	}
	if !slices.Equal(tableDefs, defNames) {
		t.Errorf("the table's definitions are %v; the schema's, in its order, are %v", tableDefs, defNames)
	}
	for _, def := range defNames {
		b, ok := builtins.Lookup(builder[def])
		if !ok {
			t.Errorf("schema %s has builder %s, which the table lacks", def, builder[def])
			continue
		}
		if b.Definition != def {
			t.Errorf("table: %s is written with %s; the schema writes it with %s", b.Name, b.Definition, def)
		}
	}
}

// schemaAttrs returns what the definition's attrs are made from: each
// attr (also one given under a condition) and the field of the definition
// it is. An attr that is not a plain reference to a field is an error.
func schemaAttrs(t *testing.T, files []*ast.File, def string) []builtins.Derived {
	t.Helper()
	var out []builtins.Derived
	for _, f := range files {
		for _, decl := range f.Decls {
			field, ok := decl.(*ast.Field)
			if !ok {
				continue
			}
			if name, _, _ := ast.LabelName(field.Label); name != def {
				continue
			}
			body, ok := field.Value.(*ast.StructLit)
			if !ok {
				t.Fatalf("%s: schema %s is not a struct", field.Pos(), def)
			}
			for _, elt := range body.Elts {
				if a, ok := elt.(*ast.Field); ok {
					if name, _, _ := ast.LabelName(a.Label); name == "attrs" {
						out = append(out, attrsOf(t, def, a.Value)...)
					}
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b builtins.Derived) int { return strings.Compare(a.Attr, b.Attr) })
	return out
}

func attrsOf(t *testing.T, def string, x ast.Expr) []builtins.Derived {
	s, ok := x.(*ast.StructLit)
	if !ok {
		t.Errorf("%s: %s.attrs is not a struct of fields", x.Pos(), def)
		return nil
	}
	var out []builtins.Derived
	for _, elt := range s.Elts {
		switch e := elt.(type) {
		case *ast.Field:
			attr, _, err := ast.LabelName(e.Label)
			ref, ok := e.Value.(*ast.Ident)
			if err != nil || !ok {
				t.Errorf("%s: %s.attrs: an attr that is not made from a field of the definition", e.Pos(), def)
				continue
			}
			out = append(out, builtins.Derived{Attr: attr, Field: ref.Name})
		case *ast.Comprehension:
			out = append(out, attrsOf(t, def, e.Value)...)
		default:
			t.Errorf("%s: %s.attrs: %T, want fields", elt.Pos(), def, elt)
		}
	}
	return out
}

func TestDerivedAttrsMatchTheSchema(t *testing.T) {
	v, files := schema(t)
	for _, b := range builtins.All {
		got := slices.Clone(b.Derived)
		slices.SortFunc(got, func(a, b builtins.Derived) int { return strings.Compare(a.Attr, b.Attr) })
		want := schemaAttrs(t, files, b.Definition)
		if !slices.Equal(got, want) {
			t.Errorf("table: %s derives attrs %v; schema %s makes %v", b.Name, got, b.Definition, want)
		}
		fields := fieldNames(v.LookupPath(cue.MakePath(cue.Def(b.Definition))))
		for _, d := range want {
			if !slices.Contains(fields, d.Field) {
				t.Errorf("schema %s: attrs.%s is made from %s, which is not a field of %s (fields: %v)", b.Definition, d.Attr, d.Field, b.Definition, fields)
			}
		}
	}
}

// fieldNames lists v's regular fields, optional ones too, without
// their markers.
func fieldNames(v cue.Value) []string {
	var names []string
	it, err := v.Fields(cue.Optional(true))
	if err != nil {
		return nil
	}
	for it.Next() {
		names = append(names, it.Selector().Unquoted())
	}
	return names
}

func TestPolicyKindsMatchTheSchema(t *testing.T) {
	v, _ := schema(t)
	every := fieldNames(v.LookupPath(cue.MakePath(cue.Def("#Policy"), cue.Str("every").Optional())))
	want := slices.DeleteFunc(slices.Clone(every), func(k string) bool { return k == "derivation" })
	if len(every) != len(want)+1 {
		t.Errorf("#Policy.every has fields %v; want derivation (every derivation) among them", every)
	}
	var got []string
	for _, b := range builtins.All {
		got = append(got, b.PolicyKind)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the table's policy kinds are %v; #Policy.every's, in its order, are %v", got, want)
	}
}

func TestEveryBuiltinIsRegisteredWithTheSandbox(t *testing.T) {
	for _, b := range builtins.All {
		if !registered(b.Short()) {
			t.Errorf("%s: the builder package registers no %q with the sandbox", b.Name, b.Short())
		}
	}
}

// registered reports whether name is registered with the sandbox: the
// sandbox refuses (panics at) a second registration of a name. (A name
// that was not registered is, afterwards, with a builder that fails.)
func registered(name string) (yes bool) {
	defer func() { yes = recover() != nil }()
	sandbox.RegisterBuiltin(name, func(args, env []string, stdout, stderr io.Writer) error {
		return errors.New("registered by a test of " + strconv.Quote(name))
	})
	return false
}
