// Package policy enforces an organisation's policies (heph.#Policy) on a
// configuration and its derivation graph: CUE constraints unified with the
// configuration, and rules over the graph that CUE cannot see, each
// violation reported with where the policy says it and where the
// configuration breaks it.
package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"cuelang.org/go/cue"
	"golang.org/x/mod/semver"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/srcpos"
)

// DefaultFile is the policy file hephc reads beside a configuration.
const DefaultFile = "policy.cue"

// Policy is one policy: a value of heph.#Policy and where it came from.
type Policy struct {
	// Source names the policy for people: its file, or the
	// configuration's policy field.
	Source string
	Value  cue.Value
}

// Set is the policies that apply to a configuration, and the files and
// package directories they were read from (for the evaluation cache).
type Set struct {
	Policies   []*Policy
	Deps, Dirs []string
}

// Sources names the policies, in order.
func (s *Set) Sources() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.Policies))
	for i, p := range s.Policies {
		out[i] = p.Source
	}
	return out
}

// Files returns the policy files that apply to cfg besides its own policy
// field: DefaultFile in its directory when that exists and is not one of
// its files, then extra (absolute), without repeats.
func Files(cfg *lang.Config, extra []string) []string {
	var files []string
	// A policy.cue that cannot be read (a dangling link) is an error when
	// loading it, never a policy switched off.
	def := filepath.Join(cfg.Dir, DefaultFile)
	if _, err := os.Lstat(def); err == nil && !slices.Contains(cfg.Files, def) {
		files = append(files, def)
	}
	for _, f := range extra {
		if !slices.Contains(files, f) && !slices.Contains(cfg.Files, f) {
			files = append(files, f)
		}
	}
	return files
}

// Load returns the policies of cfg: its own policy field, when it has one,
// and the policy field of each file (loaded with l, so that values unify).
// A policy that is not a valid heph.#Policy, or contradicts itself, is an
// error with positions.
func Load(l *lang.Loader, cfg *lang.Config, files []string) (*Set, error) {
	def, err := l.Definition(cfg.Dir, "#Policy")
	if err != nil {
		return nil, err
	}
	set := &Set{}
	field := cue.MakePath(cue.Str(eval.PolicyField))
	if v := cfg.Value.LookupPath(field); v.Exists() {
		source := "the configuration's policy field"
		if at := eval.ValuePos(v); at.IsValid() {
			source = srcpos.RelPath(l.Cwd, at.File)
		}
		p, err := newPolicy(source, v, def, l)
		if err != nil {
			return nil, err
		}
		set.Policies = append(set.Policies, p)
	}
	for _, f := range files {
		pc, err := l.Load(f)
		if err != nil {
			return nil, err
		}
		set.Deps = append(set.Deps, pc.Deps...)
		set.Dirs = append(set.Dirs, pc.Dirs...)
		v := pc.Value.LookupPath(field)
		if !v.Exists() {
			if err := pc.Value.Err(); err != nil {
				return nil, l.Diagnose(err)
			}
			return nil, fmt.Errorf("%s: no %s field: a policy file sets %s: heph.#Policy & {…}", srcpos.RelPath(l.Cwd, f), eval.PolicyField, eval.PolicyField)
		}
		p, err := newPolicy(srcpos.RelPath(l.Cwd, f), v, def, l)
		if err != nil {
			return nil, err
		}
		set.Policies = append(set.Policies, p)
	}
	return set, nil
}

// newPolicy checks v against #Policy: the constraints (system, every) may
// be incomplete, the rules over the graph must be concrete.
func newPolicy(source string, v, def cue.Value, l *lang.Loader) (*Policy, error) {
	// A disjunction would leave every rule unknown.
	if disjunction(v, 0) {
		at := eval.ValuePos(v)
		return nil, lang.Diagnostics{{Pos: at.RelTo(l.Cwd), Path: eval.PolicyField,
			Msg: "the policy is a disjunction of several policies: give one (or mark one the default with *)"}}
	}
	v, _ = v.Default()
	v = v.Unify(def)
	if err := v.Validate(); err != nil {
		return nil, l.Diagnose(err)
	}
	for _, rule := range graphRules {
		r := v.LookupPath(cue.ParsePath(rule))
		if !r.Exists() {
			continue
		}
		if err := r.Validate(cue.Concrete(true)); err != nil {
			return nil, l.Diagnose(err)
		}
	}
	if ds := checkVersions(v, l.Cwd); ds != nil {
		return nil, ds
	}
	p := &Policy{Source: source, Value: v}
	if _, _, err := p.Trust(); err != nil { // trust.go: compiled here so that its errors come with the others
		return nil, trustRelTo(err, l.Cwd)
	}
	return p, nil
}

// checkVersions requires the versions in versions.minimum and
// versions.banned to be semantic versions, which the go command orders
// (a version that is not would never match).
func checkVersions(v cue.Value, cwd string) lang.Diagnostics {
	var ds lang.Diagnostics
	bad := func(at cue.Value, path, version string) {
		p := eval.ValuePos(at)
		ds = append(ds, lang.Diagnostic{Pos: p.RelTo(cwd), Path: path,
			Msg: fmt.Sprintf("%q is not a semantic version (want vMAJOR.MINOR.PATCH, e.g. v0.35.0)", version)})
	}
	each := func(path string, f func(sel cue.Selector, v cue.Value)) {
		it, err := v.LookupPath(cue.ParsePath(path)).Fields()
		if err != nil {
			return
		}
		for it.Next() {
			f(it.Selector(), it.Value())
		}
	}
	each("versions.minimum", func(sel cue.Selector, m cue.Value) {
		if s, _ := m.String(); !semver.IsValid(s) {
			bad(m, "policy.versions.minimum."+sel.String(), s)
		}
	})
	each("versions.banned", func(mod cue.Selector, vs cue.Value) {
		it, err := vs.Fields()
		if err != nil {
			return
		}
		for it.Next() {
			if s := it.Selector().Unquoted(); !semver.IsValid(s) {
				bad(it.Value(), "policy.versions.banned."+mod.String()+"."+it.Selector().String(), s)
			}
		}
	})
	return ds.Sort()
}

// disjunction reports whether v, after defaults, is a disjunction or a
// conjunction with one.
func disjunction(v cue.Value, depth int) bool {
	v, _ = v.Default()
	op, args := v.Expr()
	switch {
	case op == cue.OrOp:
		return true
	case op == cue.AndOp && depth < 8:
		for _, a := range args {
			if disjunction(a, depth+1) {
				return true
			}
		}
	}
	return false
}

// graphRules are the fields of #Policy checked over the graph.
var graphRules = []string{"licenses", "sources", "versions", "groups", "image", "images", "tests"}
