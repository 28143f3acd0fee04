package eval

import (
	"regexp"
	"slices"
	"strings"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/literal"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/store"
)

// reserved are identifiers the fast path does not take as labels.
var reserved = map[string]bool{"true": true, "false": true, "null": true, "if": true, "for": true, "in": true, "let": true, "import": true, "package": true, "func": true, "heph": true}

// plainLabel returns a field's label when it is a plain regular identifier
// whose selector CUE prints as it is.
func plainLabel(fd *ast.Field) (string, bool) {
	id, ok := fd.Label.(*ast.Ident)
	if !ok || fd.Alias != nil || fd.Constraint != token.ILLEGAL || len(fd.Attrs) > 0 {
		return "", false
	}
	if !isLabel(id.Name) {
		return "", false
	}
	return id.Name, true
}

// plainFields returns the fields of a struct literal and their labels
// when every element is a field with a plain label, each label once.
func plainFields(e ast.Expr) ([]*ast.Field, []string, bool) {
	s, ok := e.(*ast.StructLit)
	if !ok {
		return nil, nil, false
	}
	fs := make([]*ast.Field, 0, len(s.Elts))
	ls := make([]string, 0, len(s.Elts))
	var seen map[string]bool // for a long struct
	if len(s.Elts) > 16 {
		seen = make(map[string]bool, len(s.Elts))
	}
	for _, el := range s.Elts {
		switch el := el.(type) {
		case *ast.CommentGroup:
		case *ast.Field:
			l, ok := plainLabel(el)
			if !ok || seen != nil && seen[l] || seen == nil && slices.Contains(ls, l) {
				return nil, nil, false
			}
			if seen != nil {
				seen[l] = true
			}
			fs, ls = append(fs, el), append(ls, l)
		default:
			return nil, nil, false
		}
	}
	return fs, ls, true
}

// scope is the labels of the literal structs around an expression, below
// the package's top level, innermost first: a reference whose first
// identifier is one of them is not to the top level.
type scope struct {
	labels []string
	set    map[string]bool // of a long struct's labels
	up     *scope
}

// within returns the scope of a struct literal with labels inside s.
func within(s *scope, labels []string) *scope {
	in := &scope{labels: labels, up: s}
	if len(labels) > 16 {
		in.set = make(map[string]bool, len(labels))
		for _, l := range labels {
			in.set[l] = true
		}
	}
	return in
}

func (s *scope) has(name string) bool {
	for ; s != nil; s = s.up {
		if s.set != nil && s.set[name] || s.set == nil && slices.Contains(s.labels, name) {
			return true
		}
	}
	return false
}

// isLabel reports whether s is an identifier the fast path takes as a
// label or a reference's part: [A-Za-z][A-Za-z0-9_]*, not reserved. (A
// regular expression here cost a tenth of a cold evaluation.)
func isLabel(s string) bool {
	if s == "" || reserved[s] {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && ('0' <= c && c <= '9' || c == '_')) {
			return false
		}
	}
	return true
}

// fastContainer handles a field of a struct holding derivations: its value
// is a derivation literal or a struct literal of such fields.
func fastContainer(fd *ast.Field, path []string, shadow *scope, ff *fastFile, ar *arenas, used *bool) bool {
	label, ok := plainLabel(fd)
	if !ok || len(path) == 0 && label == "policy" {
		return false
	}
	path = append(path[:len(path):len(path)], label)
	switch v := fd.Value.(type) {
	case *ast.StructLit:
		fs, labels, ok := plainFields(v)
		if !ok || slices.Contains(labels, "builder") {
			return false // a struct with a builder is a derivation to Build
		}
		inner := within(shadow, labels)
		for _, e := range fs {
			if !fastContainer(e, path, inner, ff, ar, used) {
				return false
			}
		}
		return true
	case *ast.BinaryExpr:
		d, ok := fastDerivation(v, fd.Label.Pos(), path, shadow, ar)
		if !ok || !d.valid() {
			return false
		}
		*used = true
		d.ff = ff
		ff.decls = append(ff.decls, d)
		return true
	}
	return false
}

// The schema's constraints on what the fast path decodes (defs/*.cue).
var (
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,199}$`)
	builderRE    = regexp.MustCompile(`^(builtin:[a-z][a-z0-9-]*|@\{[A-Za-z_][A-Za-z0-9_.]*\}(/.+)?)$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	spdxRE       = regexp.MustCompile(`^[(]*[A-Za-z0-9][A-Za-z0-9.+-]*[)]*( (AND|OR|WITH) [(]*[A-Za-z0-9][A-Za-z0-9.+-]*[)]*)*$`)
	outputHashRE = regexp.MustCompile(`^(h1:[A-Za-z0-9+/]{43}=|blake3:[0-9a-f]{64})$`)
)

// fastDerivation decodes heph.#Derivation & {…} whose fields are name,
// builder (required), version, system, args, env, meta, outputHash (string
// literals and lists and structs of them) and inputs (references).
func fastDerivation(e *ast.BinaryExpr, at token.Pos, path []string, shadow *scope, ar *arenas) (*fastDecl, bool) {
	if e.Op != token.AND {
		return nil, false
	}
	sel, ok := e.X.(*ast.SelectorExpr)
	if !ok {
		return nil, false
	}
	if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "heph" || shadow.has("heph") {
		return nil, false
	}
	if def, ok := sel.Sel.(*ast.Ident); !ok || def.Name != "#Derivation" {
		return nil, false
	}
	lit, ok := e.Y.(*ast.StructLit)
	if !ok || !lit.Lbrace.IsValid() {
		return nil, false
	}
	d := &cut(&ar.decls, 1)[0]
	d.path, d.pos = path, posOf(at)
	d.drv = store.Derivation{System: DefaultSystem, Env: map[string]string{}, Attrs: map[string]any{}, Args: []string{}}
	d.meta.Channel = DefaultChannel
	fields, labels, ok := plainFields(lit)
	if !ok || !slices.Contains(labels, "name") || !slices.Contains(labels, "builder") {
		return nil, false
	}
	inner := within(shadow, labels)
	for i, fd := range fields {
		l := labels[i]
		var good bool
		switch l {
		case "name":
			d.drv.Name, good = str(fd.Value)
			good = good && nameRE.MatchString(d.drv.Name) && !strings.Contains(d.drv.Name, "..")
		case "version":
			d.drv.Version, good = str(fd.Value)
		case "system":
			d.drv.System, good = str(fd.Value)
			good = good && (d.drv.System == "x86_64-linux" || d.drv.System == "aarch64-linux")
		case "builder":
			d.drv.Builder, good = str(fd.Value)
			good = good && builderRE.MatchString(d.drv.Builder) && d.drv.Builder != builtins.GoBuild && d.drv.Builder != builtins.FetchGoMod
		case "outputHash":
			d.drv.OutputHash, good = str(fd.Value)
			good = good && outputHashRE.MatchString(d.drv.OutputHash)
		case "args":
			d.drv.Args, good = strList(fd.Value)
		case "env":
			good = strStruct(fd.Value, func(k, v string) bool {
				if !envNameRE.MatchString(k) {
					return false
				}
				d.drv.Env[k] = v
				return true
			})
		case "meta":
			good = fastMeta(fd.Value, &d.meta)
		case "inputs":
			d.inputs, good = fastInputs(fd.Value, inner, ar)
		}
		if !good {
			return nil, false
		}
	}
	return d, true
}

// str decodes a one-line string literal (no interpolation, no bytes, no
// raw #"…"#, no multi-line """ with its indentation rules).
func str(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING || !strings.HasPrefix(lit.Value, `"`) || strings.HasPrefix(lit.Value, `"""`) {
		return "", false
	}
	s, err := literal.Unquote(lit.Value)
	return s, err == nil
}

func strList(e ast.Expr) ([]string, bool) {
	l, ok := e.(*ast.ListLit)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(l.Elts))
	for _, el := range l.Elts {
		s, ok := str(el)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// strStruct decodes a struct literal of string literals, each field once.
func strStruct(e ast.Expr, each func(k, v string) bool) bool {
	fs, ls, ok := plainFields(e)
	if !ok {
		return false
	}
	for i, f := range fs {
		v, ok := str(f.Value)
		if !ok || !each(ls[i], v) {
			return false
		}
	}
	return true
}

// fastMeta decodes a #Meta literal as cue.Value.Decode does.
func fastMeta(e ast.Expr, m *Meta) bool {
	fs, ls, ok := plainFields(e)
	if !ok {
		return false
	}
	for i, f := range fs {
		k := ls[i]
		var v string
		if k != "provides" {
			if v, ok = str(f.Value); !ok {
				return false
			}
		}
		switch k {
		case "description":
			m.Description = v
		case "homepage":
			m.Homepage = v
		case "license":
			if !spdxRE.MatchString(v) {
				return false
			}
			m.License = v
		case "channel":
			if v != "testing" && v != "stable" && v != "deprecated" {
				return false
			}
			m.Channel = v
		case "provides":
			if m.Provides, ok = strList(f.Value); !ok {
				return false
			}
		default:
			return false // #Meta is closed
		}
	}
	return true
}

// fastInputs reads inputs: each field a reference, a list literal of
// references or a struct literal of references.
func fastInputs(e ast.Expr, shadow *scope, ar *arenas) ([]fastInput, bool) {
	fields, labels, ok := plainFields(e)
	if !ok {
		return nil, false
	}
	inner := within(shadow, labels)
	ins := cut(&ar.inputs, len(fields))[:0]
	for i, fd := range fields {
		in := fastInput{label: labels[i]}
		switch v := fd.Value.(type) {
		case *ast.ListLit:
			in.kind = 'l'
			for _, el := range v.Elts {
				r, ok := ref(el, inner, ar)
				if !ok {
					return nil, false
				}
				in.refs = append(in.refs, r)
			}
		case *ast.StructLit:
			in.kind = 's'
			fs, keys, ok := plainFields(v)
			if !ok {
				return nil, false
			}
			scope := within(inner, keys)
			for _, f := range fs {
				r, ok := ref(f.Value, scope, ar)
				if !ok {
					return nil, false
				}
				in.refs = append(in.refs, r)
			}
			in.keys = keys
		default:
			r, ok := ref(fd.Value, inner, ar)
			if !ok {
				return nil, false
			}
			in.kind = 'r'
			in.refs = cut(&ar.refs, 1)
			in.refs[0] = r
		}
		ins = append(ins, in)
	}
	return ins, true
}

// ref reads a reference a.b.c whose first identifier is not one of
// shadow's (so that it names a field of the package's top level); its
// labels are cut from ar.
func ref(e ast.Expr, shadow *scope, ar *arenas) ([]string, bool) {
	n := 0
	for x := e; ; n++ {
		if sel, ok := x.(*ast.SelectorExpr); ok {
			id, ok := sel.Sel.(*ast.Ident)
			if !ok || !isLabel(id.Name) {
				return nil, false
			}
			x = sel.X
			continue
		}
		id, ok := x.(*ast.Ident)
		if !ok || !isLabel(id.Name) || shadow.has(id.Name) {
			return nil, false
		}
		n++
		break
	}
	out := cut(&ar.parts, n)
	for x := e; n > 0; {
		n--
		if sel, ok := x.(*ast.SelectorExpr); ok {
			out[n], x = sel.Sel.(*ast.Ident).Name, sel.X
		} else {
			out[n] = x.(*ast.Ident).Name
		}
	}
	return out, true
}

// arenas hold, in chunks, what a file's declarations are made of while it
// is extracted: fewer objects for the collector to mark, and each
// declaration's parts side by side in memory, as linking reads them.
type arenas struct {
	decls  []fastDecl
	inputs []fastInput
	refs   [][]string
	parts  []string
}
