package policy

import (
	"testing"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/store"
)

func node(t *testing.T, g *eval.Graph, attr string, d *store.Derivation, tests string) *eval.Node {
	t.Helper()
	h, err := d.Hash()
	if err != nil {
		t.Fatal(err)
	}
	n := &eval.Node{Hash: h, Drv: d, Attr: attr}
	n.Meta.Tests = []byte(tests)
	g.Nodes[h] = n
	g.Roots[attr] = h
	return n
}

// A program's go test has the program's inputs and the modules only its
// tests read (deps.N after the program's), its packages; it changes when
// the program's inputs do; tests that are off say why.
func TestGoTestOfProgram(t *testing.T) {
	g := &eval.Graph{Nodes: map[store.DrvHash]*eval.Node{}, Roots: map[string]store.DrvHash{}}
	mod := func(name, sum string) *store.Derivation {
		return &store.Derivation{Name: name, Builder: builtins.FetchGoMod, OutputHash: sum, Attrs: map[string]any{"module": name, "version": "v1.0.0"}}
	}
	src := node(t, g, "src", mod("src", "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), "")
	dep := node(t, g, "dep", mod("dep", "h1:BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), "")
	prog := func(name, tests string) *eval.Node {
		return node(t, g, "pkgs."+name, &store.Derivation{Name: name, Builder: builtins.GoBuild, System: "x86_64-linux",
			Inputs: map[string]store.DrvHash{"src": src.Hash, "deps.0": dep.Hash}, Attrs: map[string]any{"packages": []any{"."}}}, tests)
	}
	prog("p", `{"go":{"packages":["./a"],"deps":[{"name":"testonly","version":"v1.0.0","attrs":{"module":"testonly","version":"v1.0.0"},"outputHash":"h1:CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}}`)
	prog("q", `{"go":{"off":"needs cgo"}}`)
	ts, err := Tests(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Attr != "pkgs.p.tests.go" || ts[1].Attr != "pkgs.q.tests.go" {
		t.Fatalf("tests %+v", ts)
	}
	p, q := ts[0], ts[1]
	if q.Off != "needs cgo" || q.Drv != nil {
		t.Errorf("q: %+v", q)
	}
	d := p.Drv
	if d.Builder != builtins.GoTest || d.Name != "p-test" || d.Inputs["src"] != src.Hash || d.Inputs["deps.0"] != dep.Hash {
		t.Errorf("p's test: %+v", d)
	}
	extra, ok := d.Inputs["deps.1"]
	if !ok || p.Extra[extra] == nil || p.Extra[extra].OutputHash != "h1:CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" {
		t.Errorf("the test-only module: %v %+v", d.Inputs, p.Extra)
	}
	if ps := d.Attrs["packages"].([]any); len(ps) != 1 || ps[0] != "./a" {
		t.Errorf("packages %v", d.Attrs["packages"])
	}
	// Only p's closure: q is not tested.
	if ts, _ := Tests(g, g.Roots["pkgs.p"]); len(ts) != 1 {
		t.Errorf("tests of p's closure: %d", len(ts))
	}
}
