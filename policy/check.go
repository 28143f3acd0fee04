package policy

import (
	"errors"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
)

// Check enforces every policy of set on the configuration root and the
// graph g built from it (not one from the evaluation cache: the checks
// read the derivations' values). It returns all violations, sorted; none
// is nil.
func Check(root cue.Value, g *eval.Graph, set *Set) (Violations, error) {
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
			c.walk(root, "", sys, "system")
		}
		c.every()
		c.graphRules()
	}
	if len(c.out) == 0 {
		return nil, nil
	}
	return c.out.sorted(), nil
}

type checker struct {
	root   cue.Value
	g      *eval.Graph
	policy *Policy
	out    Violations
}

func (c *checker) add(rule, path, msg string, pol eval.Pos, sys eval.Pos) {
	c.out = append(c.out, Violation{Rule: rule, Path: path, Msg: msg, Policy: pol, System: sys, Source: c.policy.Source})
}

// kinds are the derivations each constraint of every applies to, by
// builder ("" for all).
var kinds = []struct{ field, builder string }{
	{"derivation", ""},
	{"goModule", "builtin:fetch-gomod"},
	{"localFile", "builtin:fetch-file"},
	{"goModFiles", "builtin:fetch-gomod-graph"},
	{"goProgram", "builtin:go-build"},
	{"busybox", "builtin:uroot-busybox"},
	{"initramfs", "builtin:uroot"},
	{"image", "builtin:system-toplevel"},
}

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
		for _, n := range nodes {
			if k.builder == "" || n.Drv.Builder == k.builder {
				c.walk(n.Value(), n.Attr, pol, "every."+k.field)
			}
		}
	}
}

// walk checks the configuration's value sys (at path) against the policy's
// constraint pol (at rule). A struct constraint is followed field by
// field, so that a required field (name!) that sys lacks, or a forbidden
// one (name?: _|_) that it has, is reported at its place; a pattern
// ([string]: X) applies to each of sys's fields. Anything else is unified
// with sys. (A reference inside a constraint therefore means the policy's
// own field, not the configuration's.)
func (c *checker) walk(sys cue.Value, path string, pol cue.Value, rule string) {
	if op, _ := pol.Expr(); pol.IncompleteKind() != cue.StructKind || op == cue.OrOp {
		c.unify(sys, path, pol, rule)
		return
	}
	it, err := pol.Fields(cue.Optional(true))
	if err != nil {
		c.unify(sys, path, pol, rule)
		return
	}
	for it.Next() {
		sel := it.Selector()
		if sel.LabelType() != cue.StringLabel {
			continue // hidden fields and definitions are the policy's own
		}
		name := cue.Str(sel.Unquoted())
		fpol := it.Value()
		fsys := sys.LookupPath(cue.MakePath(name))
		fpath, frule := join(path, name), rule+"."+name.String()
		if path == "" && name.String() == eval.PolicyField {
			continue // the policy does not constrain itself
		}
		switch sel.ConstraintType() {
		case cue.RequiredConstraint:
			if !fsys.Exists() {
				c.add(frule, fpath, "required by the policy, but not present", eval.ValuePos(fpol), eval.ValuePos(sys))
				continue
			}
		case cue.OptionalConstraint:
			if fpol.IncompleteKind() == cue.BottomKind {
				if fsys.Exists() {
					c.add(frule, fpath, "not allowed by the policy", eval.ValuePos(fpol), eval.ValuePos(fsys))
				}
				continue
			}
			if !fsys.Exists() {
				continue
			}
		default:
			if !fsys.Exists() {
				c.add(frule, fpath, "the policy requires a value here, but there is none", eval.ValuePos(fpol), eval.ValuePos(sys))
				continue
			}
		}
		c.walk(fsys, fpath, fpol, frule)
	}
	// An open struct ({...}) has the pattern [string]: _, which says
	// nothing.
	if pat := pol.LookupPath(cue.MakePath(cue.AnyString)); pat.Exists() && pat.IncompleteKind() != cue.TopKind {
		sit, err := sys.Fields()
		if err != nil {
			return
		}
		for sit.Next() {
			if path == "" && sit.Selector().String() == eval.PolicyField {
				continue
			}
			c.walk(sit.Value(), join(path, sit.Selector()), pat, rule+".[string]")
		}
	}
}

// unify reports what unifying the constraint pol with sys finds wrong. A
// concrete scalar or list is unified as the value it is, without the
// schema's alternatives it was chosen from (a default that was not taken
// would be reported as a conflict too).
func (c *checker) unify(sys cue.Value, path string, pol cue.Value, rule string) {
	val := sys
	if sys.IncompleteKind() != cue.StructKind && sys.Validate(cue.Concrete(true)) == nil {
		if x, ok := sys.Syntax(cue.Final(), cue.Concrete(true)).(ast.Expr); ok {
			val = sys.Context().BuildExpr(x)
		}
	}
	err := val.Unify(pol).Validate(cue.Concrete(true))
	if err == nil {
		return
	}
	for _, p := range lang.Explain(err) {
		at := path
		if p.Path != "" {
			at = p.Path
		}
		c.add(rule, at, p.Msg, eval.ValuePos(pol), eval.ValuePos(sys))
	}
}

func join(path string, sel cue.Selector) string {
	if path == "" {
		return sel.String()
	}
	return path + "." + sel.String()
}
