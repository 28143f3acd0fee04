package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
)

// A program's go test takes, beside its program's gostd, the #GoStdVet of
// that std cache as gostdvet (only tests wait for vet's half), the very
// derivation a #GoTest written in CUE gets; the program does not take it.
func TestGoTestTakesStdVet(t *testing.T) {
	dir := t.TempDir()
	const cfg = `package stdvet

import "hephc.dev/heph"

toolchain: heph.#GoModule & {path: "golang.org/toolchain", version: "v0.0.1-go1.26.8.linux-amd64", sum: "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
src: heph.#GoModule & {path: "example.com/p", version: "v1.0.0", sum: "h1:BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
p: heph.#GoProgram & {name: "p", inputs: {"src": src, go: toolchain}}
handTest: heph.#GoTest & {name: "hand-test", inputs: {"src": src, go: toolchain}}
`
	if err := os.WriteFile(filepath.Join(dir, "system.cue"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l := lang.NewLoader(dir)
	c, err := l.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	g, err := eval.Build(c.Value, eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	prog, hand := g.Nodes[g.Roots["p"]], g.Nodes[g.Roots["handTest"]]
	if _, ok := prog.Drv.Inputs["gostdvet"]; ok {
		t.Errorf("the program takes gostdvet: %v", prog.Drv.Inputs)
	}
	handVet, ok := hand.Drv.Inputs["gostdvet"]
	if !ok || hand.Drv.Inputs["gostd"] != prog.Drv.Inputs["gostd"] {
		t.Fatalf("the #GoTest's inputs %v; want gostdvet and the program's gostd", hand.Drv.Inputs)
	}
	vet := g.Nodes[handVet].Drv
	if vet.Name != "go-std-vet" || vet.Builder != builtins.GoStdCache || vet.Attrs["vet"] != true || vet.Inputs["gostd"] != prog.Drv.Inputs["gostd"] {
		t.Errorf("the #GoStdVet: %+v", vet)
	}
	ts, err := policy.Tests(g, g.Roots["p"])
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].Drv == nil {
		t.Fatalf("tests of p: %+v", ts)
	}
	if got := ts[0].Drv.Inputs["gostdvet"]; got != handVet {
		t.Errorf("p's go test takes gostdvet %v; the #GoTest written in CUE %v", got, handVet)
	}
	if len(ts[0].Extra) != 0 {
		t.Errorf("p's go test adds %v, which the graph has", ts[0].Extra)
	}
	// Without a #GoTest in the graph, the test brings its #GoStdVet.
	delete(g.Nodes, handVet)
	if ts, err = policy.Tests(g, g.Roots["p"]); err != nil || len(ts) != 1 {
		t.Fatalf("tests of p: %+v, %v", ts, err)
	}
	if d := ts[0].Extra[handVet]; d == nil || d.Name != "go-std-vet" || ts[0].Drv.Inputs["gostdvet"] != handVet {
		t.Errorf("p's go test without the #GoTest: inputs %v, extra %v", ts[0].Drv.Inputs, ts[0].Extra)
	}
}
