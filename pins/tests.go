package pins

import (
	"encoding/json"

	"cuelang.org/go/cue"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/store"
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
		Deps     []struct {
			Name       string         `json:"name"`
			Version    string         `json:"version"`
			Attrs      map[string]any `json:"attrs"`
			OutputHash string         `json:"outputHash"`
		} `json:"deps"`
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
	for _, d := range spec.Go.Deps {
		// The module's derivation as eval makes it: its hash finds the pin.
		md := &store.Derivation{
			Name: d.Name, Version: d.Version, System: eval.DefaultSystem, Builder: builtins.FetchGoMod,
			Args: []string{}, Env: map[string]string{}, Inputs: map[string]store.DrvHash{},
			Attrs: d.Attrs, OutputHash: d.OutputHash,
		}
		h, err := md.Hash()
		if err != nil {
			return nil
		}
		t.Deps = append(t.Deps, c.byHash[h]) // nil for one the configuration does not pin
	}
	t.Pos = c.rel(posOf(fieldPos(n.Value().LookupPath(cue.ParsePath("tests.go")))))
	if deps := n.Value().LookupPath(cue.ParsePath("tests.go.deps")); deps.Exists() {
		t.DepsList = c.list(deps)
	}
	return t
}
