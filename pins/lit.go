package pins

import (
	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/literal"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/srcpos"
)

// Lit is a string literal in one of the configuration's files.
type Lit struct {
	File   string // absolute
	Offset int    // of its opening quote
	Value  string
	Pos    srcpos.Pos
}

// List is a list literal in one of the configuration's files.
type List struct {
	File   string
	Offset int // of its '['
	Pos    srcpos.Pos
}

// lit finds the string literal of the configuration's files that gives v
// its value want; nil when there is none (a reference, a computed value,
// a literal in an imported package).
func (c *Config) lit(v cue.Value, want string) *Lit {
	var found *Lit
	c.visit(v, 0, func(n ast.Node) bool {
		if f, ok := n.(*ast.Field); ok {
			n = f.Value
		}
		bl, ok := n.(*ast.BasicLit)
		if !ok || bl.Kind != token.STRING {
			return false
		}
		s, err := literal.Unquote(bl.Value)
		if err != nil || s != want {
			return false
		}
		p := bl.Pos()
		if _, own := c.Files[p.Filename()]; !own {
			return false
		}
		found = &Lit{File: p.Filename(), Offset: p.Offset(), Value: s, Pos: posOf(p)}
		return true
	})
	return found
}

// list finds the list literal of the configuration's files that gives v
// its value; nil when v is a reference or has no such literal.
func (c *Config) list(v cue.Value) *List {
	if _, p := v.ReferencePath(); len(p.Selectors()) > 0 {
		return nil
	}
	var found *List
	c.visit(v, 0, func(n ast.Node) bool {
		if f, ok := n.(*ast.Field); ok {
			n = f.Value
		}
		ll, ok := n.(*ast.ListLit)
		if !ok {
			return false
		}
		p := ll.Lbrack
		if _, own := c.Files[p.Filename()]; !own {
			return false
		}
		found = &List{File: p.Filename(), Offset: p.Offset(), Pos: posOf(p)}
		return true
	})
	return found
}

// visit shows match the syntax v comes from, then that of each operand of
// a unification, until match says it found what it looks for.
func (c *Config) visit(v cue.Value, depth int, match func(ast.Node) bool) bool {
	if depth > 8 || !v.Exists() {
		return false
	}
	if n := v.Source(); n != nil && n.Pos().IsValid() && match(n) {
		return true
	}
	op, args := v.Expr()
	if op != cue.AndOp && !(op == cue.NoOp && len(args) == 1) {
		return false
	}
	for _, a := range args {
		if c.visit(a, depth+1, match) {
			return true
		}
	}
	return false
}

func posOf(p token.Pos) srcpos.Pos {
	return srcpos.Pos{File: p.Filename(), Line: p.Line(), Col: p.Column()}
}
