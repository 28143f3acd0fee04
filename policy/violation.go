package policy

import (
	"fmt"
	"sort"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/srcpos"
)

// Violation is one value of the configuration that a policy forbids. It
// is a CUE error (lang.Exact): its position is the configuration's, its
// one related position the policy's, noted with the rule.
type Violation struct {
	// Rule is the policy's path to what it says, e.g. licenses.allow or
	// every.goModule.path.
	Rule string
	// Attr is the CUE path of the offending value in the configuration,
	// e.g. base.packages.age.meta.license.
	Attr string
	Text string
	// Policy is where the policy says it; System where the configuration
	// breaks it (invalid when the configuration lacks what the policy
	// requires and has no place to point to).
	Policy, System srcpos.Pos
}

var _ lang.Exact = Violation{}

// Position is where the configuration breaks the rule.
func (v Violation) Position() token.Pos { return lang.TokenPos(v.System) }

// InputPositions is where the policy says the rule.
func (v Violation) InputPositions() []token.Pos { return []token.Pos{lang.TokenPos(v.Policy)} }

// Notes names the rule said at the policy's position.
func (v Violation) Notes() []string { return []string{"rule " + v.Rule} }

// Path is Attr's selectors, or Attr whole when it is not a CUE path that
// its selectors spell again (a path joined by hand, such as list.0).
func (v Violation) Path() []string {
	if v.Attr == "" {
		return nil
	}
	p := cue.ParsePath(v.Attr)
	if p.Err() != nil || p.String() != v.Attr {
		return []string{v.Attr}
	}
	var elems []string
	for _, s := range p.Selectors() {
		elems = append(elems, s.String())
	}
	return elems
}

func (v Violation) Msg() (string, []any) { return "%s", []any{v.Text} }

func (v Violation) Error() string {
	if v.Attr == "" {
		return v.Text
	}
	return v.Attr + ": " + v.Text
}

// Violations are all of a check's violations, sorted; non-empty, they are
// an error (lang.Summarized: each violation, then how many there are).
type Violations []Violation

var _ lang.Summarized = Violations{}

func (vs Violations) Error() string { return lang.Report("", vs) }

// Errors returns the violations as CUE errors, in their order.
func (vs Violations) Errors() []errors.Error {
	out := make([]errors.Error, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

// Summary says how many violations there are.
func (vs Violations) Summary() string { return plural(len(vs), "violation") + " of policy" }

// Merge returns the violations of vs and more, sorted.
func (vs Violations) Merge(more Violations) Violations {
	all := append(append(Violations(nil), vs...), more...)
	if len(all) == 0 {
		return nil
	}
	return all.sorted()
}

// JSONViolation is a violation as data, positions as file:line:col
// relative to the working directory.
type JSONViolation struct {
	Rule    string `json:"rule"`
	Path    string `json:"path"`
	Message string `json:"message"`
	Policy  string `json:"policy"`
	System  string `json:"system,omitempty"`
}

// JSON returns the violations as data.
func (vs Violations) JSON(cwd string) []JSONViolation {
	out := make([]JSONViolation, 0, len(vs))
	for _, v := range vs {
		j := JSONViolation{Rule: v.Rule, Path: v.Attr, Message: v.Text, Policy: "?", System: v.System.Rel(cwd)}
		if v.Policy.IsValid() {
			j.Policy = v.Policy.Rel(cwd)
		}
		out = append(out, j)
	}
	return out
}

// sorted orders violations by the configuration's position, then path,
// rule and message, and drops repeats.
func (vs Violations) sorted() Violations {
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		if c := a.System.Compare(b.System); c != 0 {
			return c < 0
		}
		if a.Attr != b.Attr {
			return a.Attr < b.Attr
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Text < b.Text
	})
	var out Violations
	for i, v := range vs {
		if i > 0 && v == vs[i-1] {
			continue
		}
		out = append(out, v)
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
