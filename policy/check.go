package policy

import (
	"errors"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/format"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/srcpos"
)

// Result is what a check found: the violations, sorted (nil when there
// are none), and the rules that can be checked only once images are built.
type Result struct {
	Violations Violations
	Limits     []SizeLimit
}

// Check enforces every policy of set on the configuration root and the
// graph g built from it (not one from the evaluation cache: the checks
// read the derivations' values).
func Check(root cue.Value, g *eval.Graph, set *Set) (*Result, error) {
	for _, n := range g.Nodes {
		if !n.Value().Exists() {
			return nil, errors.New("checking policy: the graph has no values (it came from the evaluation cache)")
		}
		break
	}
	c := &checker{root: root, g: g}
	for _, p := range set.Policies {
		c.policy = p
		if sys := p.Value.LookupPath(cue.ParsePath("system")); sys.Exists() {
			c.walk(root, "", compile(sys, "system", srcpos.Pos{}))
		}
		c.every()
		c.graphRules()
	}
	res := &Result{Limits: c.limits}
	if len(c.out) > 0 {
		res.Violations = c.out.sorted()
	}
	return res, nil
}

type checker struct {
	root   cue.Value
	g      *eval.Graph
	policy *Policy
	out    Violations
	within []cue.Value // the values walk is in, outermost first
	limits []SizeLimit
}

// where returns where v is written in the configuration, else where the
// nearest value around it that walk is in is (a value the schema gave
// has no position of its own).
func (c *checker) where(v cue.Value) srcpos.Pos {
	if p := eval.ValuePos(v); p.IsValid() {
		return p
	}
	for i := len(c.within) - 1; i >= 0; i-- {
		if p := eval.ValuePos(c.within[i]); p.IsValid() {
			return p
		}
	}
	return srcpos.Pos{}
}

func (c *checker) add(rule, path, msg string, pol srcpos.Pos, sys srcpos.Pos) {
	c.out = append(c.out, Violation{Rule: rule, Attr: path, Text: msg, Policy: pol, System: sys})
}

// kinds are the derivations each constraint of every applies to, by
// builder ("" for all): every derivation, then each built-in builder's
// kind in the schema's order.
var kinds = func() []kind {
	ks := []kind{{"derivation", ""}}
	for _, b := range builtins.All {
		ks = append(ks, kind{b.PolicyKind, b.Name})
	}
	return ks
}()

// kind is a field of a policy's every and the builder of the derivations
// it constrains.
type kind struct{ field, builder string }

// every unifies each constraint of the policy's every with the
// derivations of its kind.
func (c *checker) every() {
	var nodes []*eval.Node
	for _, k := range kinds {
		pol := c.policy.Value.LookupPath(cue.MakePath(cue.Str("every"), cue.Str(k.field)))
		if !pol.Exists() {
			continue
		}
		if nodes == nil {
			nodes = c.g.SortedNodes()
		}
		con := compile(pol, "every."+k.field, srcpos.Pos{})
		for _, n := range nodes {
			if k.builder == "" || n.Drv.Builder == k.builder {
				c.walk(n.Value(), n.Attr, con)
			}
		}
	}
}

// constraint is a CUE constraint of a policy, taken apart once to be
// checked against many values. A struct constraint is followed field by
// field, so that a required field (name!) that a value lacks, or a
// forbidden one (name?: _|_) that it has, is reported at its place; a
// pattern ([string]: X) applies to each of the value's fields. Anything
// else is a leaf, unified with the value. (A reference inside a
// constraint therefore means the policy's own field, not the
// configuration's.)
type constraint struct {
	rule    string
	v       cue.Value
	pos     srcpos.Pos
	leaf    bool
	top     bool // _: nothing to check
	fields  []field
	pattern *constraint

	// verdicts remembers a leaf's problems with a scalar, by its value.
	verdicts map[any][]lang.Problem
}

type field struct {
	sel       cue.Selector // the regular selector
	kind      cue.SelectorType
	forbidden bool // name?: _|_
	c         *constraint
}

// compile takes pol (at rule) apart; near is the position of the
// constraint around it, for a constraint without one of its own.
func compile(pol cue.Value, rule string, near srcpos.Pos) *constraint {
	c := &constraint{rule: rule, v: pol, pos: eval.ValuePos(pol)}
	if !c.pos.IsValid() {
		c.pos = near
	}
	op, _ := pol.Expr()
	if pol.IncompleteKind() != cue.StructKind || op == cue.OrOp || !plainStruct(pol) {
		c.leaf = true
		c.top = pol.IncompleteKind() == cue.TopKind && op == cue.NoOp
		return c
	}
	it, err := pol.Fields(cue.Optional(true))
	if err != nil {
		c.leaf = true
		return c
	}
	for it.Next() {
		sel := it.Selector()
		if sel.LabelType() != cue.StringLabel {
			continue // hidden fields and definitions are the policy's own
		}
		name := cue.Str(sel.Unquoted())
		if rule == "system" && name.String() == eval.PolicyField {
			continue // the policy does not constrain itself
		}
		f := field{sel: name, kind: sel.ConstraintType(), c: compile(it.Value(), rule+"."+name.String(), c.pos)}
		f.forbidden = f.kind == cue.OptionalConstraint && it.Value().IncompleteKind() == cue.BottomKind
		c.fields = append(c.fields, f)
	}
	// An open struct ({...}) has the pattern [string]: _, which says
	// nothing.
	if pat := pol.LookupPath(cue.MakePath(cue.AnyString)); pat.Exists() && pat.IncompleteKind() != cue.TopKind {
		c.pattern = compile(pat, rule+".[string]", c.pos)
	}
	return c
}

// walk checks the configuration's value sys (at path) against con.
func (c *checker) walk(sys cue.Value, path string, con *constraint) {
	c.within = append(c.within, sys)
	defer func() { c.within = c.within[:len(c.within)-1] }()
	if con.leaf {
		if !con.top {
			c.unify(sys, path, con)
		}
		return
	}
	for _, f := range con.fields {
		fsys := sys.LookupPath(cue.MakePath(f.sel))
		fpath := join(path, f.sel)
		switch {
		case f.forbidden:
			if fsys.Exists() {
				c.add(f.c.rule, fpath, "not allowed by the policy", f.c.pos, c.where(fsys))
			}
			continue
		case fsys.Exists():
			c.walk(fsys, fpath, f.c)
		case f.kind == cue.OptionalConstraint:
			// Constrains the field only where it is present.
		case f.kind != cue.RequiredConstraint && !f.c.leaf:
			// A struct the configuration lacks: what it requires must
			// be there all the same.
			c.walk(fsys, fpath, f.c)
		default:
			// The policy does not change the configuration: a field it
			// gives (name: x) or requires (name!: x) must be there.
			c.add(f.c.rule, fpath, "required by the policy, but not present", f.c.pos, c.where(sys))
		}
	}
	if con.pattern != nil {
		it, err := sys.Fields()
		if err != nil {
			return
		}
		for it.Next() {
			if path == "" && it.Selector().String() == eval.PolicyField {
				continue
			}
			c.walk(it.Value(), join(path, it.Selector()), con.pattern)
		}
	}
}

// plainStruct reports whether the struct constraint pol can be taken
// apart field by field: it is not closed, and its only pattern is
// [string]. Anything else (close(…), [=~"^tel"]: _|_) is unified whole.
func plainStruct(pol cue.Value) bool {
	if !pol.Allows(cue.Str("hephc-probe")) {
		return false
	}
	var decls []ast.Decl
	switch x := pol.Syntax(cue.Raw()).(type) {
	case *ast.StructLit:
		decls = x.Elts
	case *ast.File: // when the constraint refers to an import
		decls = x.Decls
	default:
		return false
	}
	for _, d := range decls {
		f, ok := d.(*ast.Field)
		if !ok {
			switch d.(type) {
			case *ast.Ellipsis, *ast.ImportDecl, *ast.Package, *ast.CommentGroup:
				continue
			}
			return false // an embedding, a comprehension, a let
		}
		l, ok := f.Label.(*ast.ListLit)
		if !ok {
			continue
		}
		if len(l.Elts) != 1 {
			return false
		}
		x := l.Elts[0]
		if a, ok := x.(*ast.Alias); ok {
			x = a.Expr
		}
		if id, ok := x.(*ast.Ident); !ok || id.Name != "string" {
			return false
		}
	}
	return true
}

// unify reports what unifying the leaf constraint con with sys finds
// wrong. sys is unified as the data it is (its defaults taken, its
// schema gone): unified with the live value, a constraint would choose
// among the schema's alternatives (restart: "always" against *"on-failure"
// | "always") instead of checking what is built. Each scalar is judged
// once.
func (c *checker) unify(sys cue.Value, path string, con *constraint) {
	data, key, ok := asData(sys)
	if !ok {
		data = sys // not concrete: eval would have refused it
	}
	var problems []lang.Problem
	if ps, seen := con.verdicts[key]; key != nil && seen {
		problems = ps
	} else {
		problems = explain(data.Unify(con.v))
		if key != nil {
			if con.verdicts == nil {
				con.verdicts = make(map[any][]lang.Problem)
			}
			con.verdicts[key] = problems
		}
	}
	for _, p := range problems {
		at, deeper := path, p.Path
		if !ok && strings.HasPrefix(deeper, path) {
			deeper = strings.TrimPrefix(strings.TrimPrefix(deeper, path), ".")
		}
		if deeper != "" {
			at = joinPath(path, deeper)
		}
		msg := p.Msg
		switch {
		case strings.HasPrefix(msg, "explicit error (_|_ literal)"):
			// CUE names the struct whose pattern forbids a field: find
			// the fields.
			if fields := forbiddenFields(data, deeper, con.v); len(fields) > 0 {
				for _, f := range fields {
					c.add(con.rule, joinPath(at, f), "not allowed by the policy", con.pos, c.whereAt(sys, joinPath(at, f)))
				}
				continue
			}
			msg = "not allowed by the policy"
		case msg == "field is required but not present":
			msg = "required by the policy, but not present"
		case msg == "field not allowed by the schema":
			msg = "not allowed by the policy (a closed struct)"
		}
		c.add(con.rule, at, msg, con.pos, c.whereAt(sys, at))
	}
}

// whereAt returns where the value at path (below sys) is written, else
// where sys is.
func (c *checker) whereAt(sys cue.Value, path string) srcpos.Pos {
	if q := eval.ValuePos(c.root.LookupPath(cue.ParsePath(path))); q.IsValid() {
		return q
	}
	return c.where(sys)
}

// forbiddenFields returns the fields of the struct at rel in data that
// the constraint pol forbids one by one (a pattern such as [=~"^tel"]:
// _|_ that CUE reports at the struct).
func forbiddenFields(data cue.Value, rel string, pol cue.Value) []string {
	p := cue.ParsePath(rel)
	st, sub := data.LookupPath(p), pol.LookupPath(p)
	it, err := st.Fields()
	if err != nil || !sub.Exists() {
		return nil
	}
	var out []string
	for it.Next() {
		one := data.Context().CompileString("{}").FillPath(cue.MakePath(it.Selector()), it.Value())
		err := one.Unify(sub).Validate()
		if err == nil || !strings.Contains(err.Error(), "explicit error (_|_ literal)") {
			continue
		}
		// The field itself, or something in it that a constraint on the
		// field forbids.
		name := it.Selector().String()
		inner := forbiddenFields(st, name, sub)
		if len(inner) == 0 {
			out = append(out, name)
		}
		for _, f := range inner {
			out = append(out, joinPath(name, f))
		}
	}
	return out
}

func joinPath(path, rel string) string {
	switch {
	case path == "":
		return rel
	case rel == "":
		return path
	case strings.HasPrefix(rel, "["):
		return path + rel
	}
	return path + "." + rel
}

func explain(v cue.Value) []lang.Problem {
	if err := v.Validate(cue.Concrete(true), cue.Final()); err != nil {
		return lang.Explain(err)
	}
	return nil
}

// numberKey keys a number's verdict by its kind and decimal text (a
// float64 would round 0.30000000000000001 to 0.3).
type numberKey struct {
	kind cue.Kind
	text string
}

// asData returns sys as plain data, built anew from its concrete syntax,
// and a key for its verdict when it is a scalar.
func asData(sys cue.Value) (data cue.Value, key any, ok bool) {
	ctx := sys.Context()
	switch sys.IncompleteKind() {
	case cue.StringKind:
		if s, err := sys.String(); err == nil {
			return ctx.Encode(s), s, true
		}
	case cue.BoolKind:
		if b, err := sys.Bool(); err == nil {
			return ctx.Encode(b), b, true
		}
	}
	x, isExpr := sys.Syntax(cue.Final(), cue.Concrete(true)).(ast.Expr)
	if !isExpr {
		return cue.Value{}, nil, false
	}
	data = ctx.BuildExpr(x)
	if data.Err() != nil {
		return cue.Value{}, nil, false
	}
	switch k := data.Kind(); k {
	case cue.IntKind, cue.FloatKind, cue.NullKind:
		if b, err := format.Node(x); err == nil {
			key = numberKey{k, string(b)}
		}
	}
	return data, key, true
}

func join(path string, sel cue.Selector) string { return joinPath(path, sel.String()) }
