package pins

import (
	"encoding/json"

	"cuelang.org/go/cue"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/gomod"
)

// Tests are a program's go test (its tests field, #GoTests): the
// packages it runs and the modules only they read.
type Tests struct {
	Off      bool
	Packages []string
	Deps     []*Module // tests.go.deps, in the order written
	// DepsList is where tests.go.deps is written; nil when it is not a
	// list literal of the configuration's files (or not written).
	DepsList *List
	Pos      string // where tests.go is written, file:line:col
}

// goTestsSpec is the JSON of #GoTests (eval.Meta.Tests).
type goTestsSpec struct {
	Go struct {
		Packages []string `json:"packages"`
		Off      string   `json:"off"`
		Deps     []any    `json:"deps"`
	} `json:"go"`
}

// tests reads the tests of the program node n; nil when it has none.
func (c *Config) tests(n *eval.Node) *Tests {
	if len(n.Meta.Tests) == 0 {
		return nil
	}
	var spec goTestsSpec
	if json.Unmarshal(n.Meta.Tests, &spec) != nil {
		return nil
	}
	t := &Tests{Off: spec.Go.Off != "", Packages: spec.Go.Packages}
	t.Pos = c.rel(posOf(fieldPos(n.Value().LookupPath(cue.ParsePath("tests.go")))))
	deps := n.Value().LookupPath(cue.ParsePath("tests.go.deps"))
	for i := range spec.Go.Deps {
		t.Deps = append(t.Deps, c.moduleAt(deps.LookupPath(cue.MakePath(cue.Index(i))))) // nil for one the configuration does not pin
	}
	if deps.Exists() {
		t.DepsList = c.list(deps)
	}
	return t
}

// moduleAt is the pin v is (a reference to one, or a #GoModule written
// in place): the module whose attr the reference names, else the pin of
// the same path, version and sum; nil for none.
func (c *Config) moduleAt(v cue.Value) *Module {
	if _, ref := v.ReferencePath(); len(ref.Selectors()) > 0 {
		for _, m := range c.Modules {
			if m.Attr == ref.String() {
				return m
			}
		}
	}
	var want gomod.Module
	want.Path, _ = v.LookupPath(cue.ParsePath("path")).String()
	want.Version, _ = v.LookupPath(cue.ParsePath("version")).String()
	want.Sum, _ = v.LookupPath(cue.ParsePath("sum")).String()
	for _, m := range c.Modules {
		if m.Module == want {
			return m
		}
	}
	return nil
}
