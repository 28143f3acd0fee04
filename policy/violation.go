package policy

import (
	"fmt"
	"sort"
	"strings"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
)

// Violation is one value of the configuration that a policy forbids.
type Violation struct {
	// Rule is the policy's path to what it says, e.g. licenses.allow or
	// every.goModule.path.
	Rule string
	// Path is the CUE path of the offending value in the configuration,
	// e.g. base.packages.age.meta.license.
	Path string
	Msg  string
	// Policy is where the policy says it; System where the configuration
	// breaks it (invalid when the configuration lacks what the policy
	// requires and has no place to point to).
	Policy, System eval.Pos
}

// Violations are all of a check's violations, sorted; non-empty, they are
// an error.
type Violations []Violation

func (vs Violations) Error() string { return vs.Render("") }

// Render writes one violation a paragraph: the configuration's position,
// the path and the message, then the policy's position and rule, with
// files relative to cwd.
func (vs Violations) Render(cwd string) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte('\n')
		}
		if v.System.IsValid() {
			b.WriteString(formatPos(cwd, v.System) + ": ")
		} else {
			b.WriteString("hephc: ")
		}
		fmt.Fprintf(&b, "%s: %s\n\t%s: rule %s", v.Path, v.Msg, formatPos(cwd, v.Policy), v.Rule)
	}
	fmt.Fprintf(&b, "\nhephc: %s of policy", plural(len(vs), "violation"))
	return b.String()
}

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
		j := JSONViolation{Rule: v.Rule, Path: v.Path, Message: v.Msg, Policy: formatPos(cwd, v.Policy)}
		if v.System.IsValid() {
			j.System = formatPos(cwd, v.System)
		}
		out = append(out, j)
	}
	return out
}

func formatPos(cwd string, p eval.Pos) string {
	if !p.IsValid() {
		return "?"
	}
	return fmt.Sprintf("%s:%d:%d", lang.RelPath(cwd, p.File), p.Line, p.Col)
}

// sorted orders violations by the configuration's position, then path,
// rule and message, and drops repeats.
func (vs Violations) sorted() Violations {
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		if a.System.File != b.System.File {
			return a.System.File < b.System.File
		}
		if a.System.Line != b.System.Line {
			return a.System.Line < b.System.Line
		}
		if a.System.Col != b.System.Col {
			return a.System.Col < b.System.Col
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Msg < b.Msg
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
