package lang

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/defs"
)

// Hint adds to the errors of evaluating c what was probably meant: for a
// field the schema does not allow, the schema's field of the closest
// name; for a reference to nothing, the closest name in scope; for a
// selector a struct does not have, its closest field. A name is
// suggested only when it is the one close candidate (see closeName);
// Report says it as "(did you mean NAME?)". Errors that are not CUE's
// are returned as they are.
func (c *Config) Hint(err error) error {
	e, ok := err.(errors.Error)
	if !ok {
		return err
	}
	var out errors.Error
	changed := false
	for i, one := range errors.Errors(e) {
		// Each hint may walk the syntax: the first maxHints errors are
		// enough for a person to see what was meant.
		if i >= maxHints {
			out = errors.Append(out, one)
			continue
		}
		if meant := c.meant(one); meant != "" {
			one, changed = &hinted{cause: one, meant: meant}, true
		}
		out = errors.Append(out, one)
	}
	if !changed {
		return err
	}
	return out
}

const maxHints = 100

// hinted is a CUE error and the name that was probably meant.
type hinted struct {
	cause errors.Error
	meant string
}

func (h *hinted) Position() token.Pos         { return h.cause.Position() }
func (h *hinted) InputPositions() []token.Pos { return h.cause.InputPositions() }
func (h *hinted) Error() string               { return h.cause.Error() }
func (h *hinted) Path() []string              { return h.cause.Path() }
func (h *hinted) Msg() (string, []any)        { return h.cause.Msg() }

// didYouMean is what explain adds to the message of a hinted error.
func didYouMean(e errors.Error) string {
	if h, ok := e.(*hinted); ok {
		return " (did you mean " + h.meant + "?)"
	}
	return ""
}

var (
	undefinedField = regexp.MustCompile(`undefined field: (\S+)$`)
	refNotFound    = regexp.MustCompile(`^reference "([^"]+)" not found$`)
)

// meant returns the name e's offending name was probably meant to be, or "".
func (c *Config) meant(e errors.Error) string {
	format, args := e.Msg()
	msg := fmt.Sprintf(format, args...)
	switch {
	case msg == "field not allowed":
		p := e.Path()
		if len(p) == 0 {
			return ""
		}
		label := p[len(p)-1]
		if u, err := strconv.Unquote(label); err == nil {
			label = u // x.env."FOO-BAR"
		}
		parent := c.Value.LookupPath(valuePath(p[:len(p)-1]))
		return closeName(label, fieldLabels(parent, label))
	case undefinedField.MatchString(msg):
		name := undefinedField.FindStringSubmatch(msg)[1]
		return c.meantSelector(e, name)
	case refNotFound.MatchString(msg):
		name := refNotFound.FindStringSubmatch(msg)[1]
		st := c.stackAt(e, func(n ast.Node) bool {
			id, ok := n.(*ast.Ident)
			return ok && id.Name == name
		})
		if st == nil {
			return ""
		}
		var names []string
		for _, sc := range scopes(st, c.syntax) {
			for n := range sc.names {
				names = append(names, n)
			}
		}
		return closeName(name, names)
	}
	return ""
}

// meantSelector is meant for a selector X.name whose X has no field name:
// X's closest field, when X is a path to a value of the configuration.
func (c *Config) meantSelector(e errors.Error, name string) string {
	var sel *ast.SelectorExpr
	st := c.stackAt(e, func(n ast.Node) bool {
		s, ok := n.(*ast.SelectorExpr)
		if ok && labelName(s.Sel) == name {
			sel = s
		}
		return ok && sel == s
	})
	if st == nil {
		return ""
	}
	// X is IDENT(.LABEL)*: the identifier is resolved as CUE does, to the
	// innermost field of that name, whose path is known outside lists.
	var chain []string
	x := sel.X
	for {
		if s, ok := x.(*ast.SelectorExpr); ok {
			chain = append([]string{labelName(s.Sel)}, chain...)
			x = s.X
			continue
		}
		break
	}
	id, ok := x.(*ast.Ident)
	if !ok {
		return ""
	}
	if len(chain) == 0 && importsSchema(st, id.Name) {
		return closeName(name, schemaDefinitions())
	}
	var base []string
	found := false
	ss := scopes(st, c.syntax)
	for i := len(ss) - 1; i >= 0 && !found; i-- {
		if _, ok := ss[i].names[id.Name]; ok {
			if ss[i].path == nil || ss[i].names[id.Name] == "" {
				return "" // a let, an import, a comprehension's variable
			}
			base, found = append(slices.Clone(ss[i].path), ss[i].names[id.Name]), true
		}
	}
	if !found {
		return ""
	}
	v := c.Value.LookupPath(valuePath(append(base, chain...)))
	return closeName(name, fieldLabels(v, name))
}

// stackAt returns the chain of syntax nodes from a file of c down to the
// first node that match accepts at one of e's positions, or nil.
func (c *Config) stackAt(e errors.Error, match func(ast.Node) bool) []ast.Node {
	at := make(map[string]bool)
	for _, p := range append(e.InputPositions(), e.Position()) {
		if p.IsValid() {
			at[p.String()] = true
		}
	}
	for _, f := range c.syntax {
		var stack, found []ast.Node
		ast.Walk(f, func(n ast.Node) bool {
			if found != nil {
				return false
			}
			stack = append(stack, n)
			if match(n) && (at[n.Pos().String()] || atLabel(n, at)) {
				found = slices.Clone(stack)
			}
			return true
		}, func(ast.Node) { stack = stack[:len(stack)-1] })
		if found != nil {
			return found
		}
	}
	return nil
}

// atLabel reports whether n is a selector whose label is at one of the
// positions (CUE places an undefined field at its label).
func atLabel(n ast.Node, at map[string]bool) bool {
	s, ok := n.(*ast.SelectorExpr)
	return ok && at[s.Sel.Pos().String()]
}

// scope is one lexical scope: a file (with the package's other files) or
// a struct literal. names maps each name declared there to the label of
// the field it names ("" for a let or an import); path is the scope's
// value path, nil when it has none that can be looked up (in a list, a
// comprehension, a let).
type scope struct {
	names map[string]string
	path  []string
}

// scopes returns the scopes that enclose the innermost node of stack,
// outermost first. The outermost is the package's: the top-level fields
// of every file, and the imports of the stack's file.
func scopes(stack []ast.Node, files []*ast.File) []scope {
	var out []scope
	var path []string
	for i, n := range stack {
		switch n := n.(type) {
		case *ast.File:
			path = []string{}
			sc := scope{names: map[string]string{}, path: path}
			for _, f := range files {
				declare(sc.names, f.Decls, f == n)
			}
			out = append(out, sc)
		case *ast.StructLit:
			sc := scope{names: map[string]string{}, path: path}
			declare(sc.names, n.Elts, false)
			out = append(out, sc)
		case *ast.Field:
			if i+1 < len(stack) && stack[i+1] == n.Value && path != nil {
				if l := fieldLabel(n.Label); l != "" {
					path = append(slices.Clone(path), l)
				} else {
					path = nil
				}
			}
		case *ast.ListLit, *ast.Comprehension, *ast.LetClause:
			path = nil
		}
	}
	return out
}

// declare adds the names decls declare to names; imports only when
// withImports.
func declare(names map[string]string, decls []ast.Decl, withImports bool) {
	for _, d := range decls {
		switch d := d.(type) {
		case *ast.Field:
			l := fieldLabel(d.Label)
			if l != "" {
				names[l] = l
			}
			if a, ok := d.Label.(*ast.Alias); ok && l != "" {
				names[a.Ident.Name] = l
			}
		case *ast.LetClause:
			names[d.Ident.Name] = ""
		case *ast.ImportDecl:
			if !withImports {
				continue
			}
			for _, s := range d.Specs {
				names[importName(s)] = ""
			}
		case *ast.EmbedDecl:
			// An embedded struct's fields are the scope's own.
			if s, ok := d.Expr.(*ast.StructLit); ok {
				declare(names, s.Elts, false)
			}
		}
	}
}

// fieldLabel is the name a field's label declares, "" for a pattern or an
// interpolation.
func fieldLabel(l ast.Label) string {
	if a, ok := l.(*ast.Alias); ok {
		if e, ok := a.Expr.(ast.Label); ok {
			l = e
		} else {
			return ""
		}
	}
	return labelName(l)
}

func labelName(l ast.Label) string {
	name, _, err := ast.LabelName(l)
	if err != nil {
		return ""
	}
	return name
}

// importName is the name an import is referred to by.
func importName(s *ast.ImportSpec) string {
	if s.Name != nil {
		return s.Name.Name
	}
	p, err := strconv.Unquote(s.Path.Value)
	if err != nil {
		return ""
	}
	if i := strings.LastIndex(p, ":"); i >= 0 {
		return p[i+1:]
	}
	base := path.Base(p)
	if i := strings.Index(base, "@"); i >= 0 {
		base = base[:i]
	}
	return base
}

// valuePath makes the elements of a CUE error's path a cue.Path.
func valuePath(elems []string) cue.Path {
	sels := make([]cue.Selector, 0, len(elems))
	for _, e := range elems {
		if n, err := strconv.Atoi(e); err == nil {
			sels = append(sels, cue.Index(n))
		} else if strings.HasPrefix(e, "#") {
			sels = append(sels, cue.Def(e))
		} else {
			if u, err := strconv.Unquote(e); err == nil {
				e = u
			}
			sels = append(sels, cue.Str(e))
		}
	}
	return cue.MakePath(sels...)
}

// fieldLabels lists the labels of v's fields (optional ones too: the
// schema's fields a value may set), a definition's when name is one, but
// name itself.
func fieldLabels(v cue.Value, name string) []string {
	it, err := v.Fields(cue.Optional(true), cue.Definitions(true))
	if err != nil {
		return nil
	}
	var out []string
	for it.Next() {
		s := it.Selector()
		if s.IsDefinition() != strings.HasPrefix(name, "#") || s.Type()&cue.HiddenLabel != 0 {
			continue
		}
		l := s.String()
		if s.IsString() {
			l = s.Unquoted()
		}
		l = strings.TrimRight(l, "?!")
		if l != name {
			out = append(out, l)
		}
	}
	return out
}

// closeName returns the candidate close to name, or "": close is an edit
// distance (insertions, deletions, substitutions and swaps of two
// neighbours; case ignored) of at most a third of name's length, at least
// 1. Of several that close, the one nearest with case counted is
// suggested; when two are as near, none is.
func closeName(name string, candidates []string) string {
	limit := max(1, len([]rune(name))/3)
	found, best, tie := "", 0, false
	for _, c := range slices.Compact(slices.Sorted(slices.Values(candidates))) {
		if c == name || c == "" || editDistance(strings.ToLower(name), strings.ToLower(c)) > limit {
			continue
		}
		switch d := editDistance(name, c); {
		case found == "" || d < best:
			found, best, tie = c, d, false
		case d == best:
			tie = true
		}
	}
	if tie {
		return ""
	}
	if found != "" && !isIdent(found) {
		return strconv.Quote(found)
	}
	return found
}

func isIdent(s string) bool {
	for i, r := range s {
		if !(r == '_' || r == '#' || r == '$' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return s != ""
}

// editDistance is the optimal string alignment distance between a and b.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

// importsSchema reports whether name is, in the file of stack, the
// schema's import.
func importsSchema(stack []ast.Node, name string) bool {
	f, ok := stack[0].(*ast.File)
	if !ok {
		return false
	}
	for imp := range f.ImportSpecs() {
		if importName(imp) == name && imp.Path.Value == strconv.Quote(defs.ImportPath) {
			return true
		}
	}
	return false
}

// schemaDefinitions lists the schema's definitions (#Derivation, …).
func schemaDefinitions() []string {
	var out []string
	for name, b := range defs.Files() {
		f, err := parser.ParseFile(name, b)
		if err != nil {
			continue
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.Field); ok {
				if l := fieldLabel(fd.Label); strings.HasPrefix(l, "#") {
					out = append(out, l)
				}
			}
		}
	}
	return out
}
