package policy

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"

	"cuelang.org/go/cue"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/imagetest"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// Test is one test of a graph: a test derivation and what it tests. A
// #GoProgram's go test (its tests field, eval.Meta.Tests) is made here
// from the program's own derivation: the same inputs (source, toolchain,
// modules, go.mod files) and the modules only its tests read, built by
// builtin:go-test. A #GoTest or #Test written in the configuration is a
// test of the derivations of its input subject.
type Test struct {
	Hash store.DrvHash
	Drv  *store.Derivation
	// Attr names the test: PROGRAM.tests.go, or where the test is written.
	Attr string
	// Pos is where the tested program (or the written test) is.
	Pos srcpos.Pos
	// Of are the derivations it tests, sorted.
	Of []store.DrvHash
	// Off is why the program's tests are off; then there is no Drv.
	Off string
	// Extra are derivations Drv needs that the graph does not have (the
	// modules only the tests read, when nothing else names them).
	Extra map[store.DrvHash]*store.Derivation
	// Image is an image's test (builder builtin:image-test), which runs
	// on the host: its steps, with their positions.
	Image *imagetest.Test
}

// Path is the test's store path: its result, when it is valid.
func (t *Test) Path() store.Path { return store.Path{Hash: t.Hash, Name: t.Drv.Name} }

// goTests is the JSON of #GoTests.
type goTests struct {
	Go struct {
		Packages []string `json:"packages"`
		Run      string   `json:"run"`
		Skip     string   `json:"skip"`
		Off      string   `json:"off"`
		Deps     []struct {
			Name       string         `json:"name"`
			Version    string         `json:"version"`
			Attrs      map[string]any `json:"attrs"`
			OutputHash string         `json:"outputHash"`
		} `json:"deps"`
	} `json:"go"`
}

// Tests returns the tests of the closure of from (every root of g when
// from is empty), sorted by Attr.
func Tests(g *eval.Graph, from ...store.DrvHash) ([]*Test, error) {
	if len(from) == 0 {
		for _, h := range g.Roots {
			from = append(from, h)
		}
	}
	inClosure := make(map[store.DrvHash]bool)
	for _, h := range g.Closure(from...) {
		inClosure[h] = true
	}
	var out []*Test
	for _, n := range g.SortedNodes() {
		switch n.Drv.Builder {
		case builtins.GoBuild:
			if !inClosure[n.Hash] || len(n.Meta.Tests) == 0 {
				continue
			}
			t, err := goTestOf(g, n)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		case builtins.SystemToplevel:
			if !inClosure[n.Hash] || len(n.Meta.Tests) == 0 {
				continue
			}
			ts, err := imageTestsOf(n)
			if err != nil {
				return nil, err
			}
			out = append(out, ts...)
		case builtins.GoTest, builtins.RunTest:
			t := &Test{Hash: n.Hash, Drv: n.Drv, Attr: n.Attr, Pos: n.Pos}
			tested := false
			for name, h := range n.Drv.Inputs {
				if name == "subject" || strings.HasPrefix(name, "subject.") {
					t.Of = append(t.Of, h)
					tested = tested || inClosure[h]
				}
			}
			if tested || inClosure[n.Hash] {
				sort.Slice(t.Of, func(i, j int) bool { return t.Of[i].String() < t.Of[j].String() })
				out = append(out, t)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attr < out[j].Attr })
	return out, nil
}

// goTestOf makes the go test of the program n.
func goTestOf(g *eval.Graph, n *eval.Node) (*Test, error) {
	var spec goTests
	if err := json.Unmarshal(n.Meta.Tests, &spec); err != nil {
		return nil, fmt.Errorf("%s: reading its tests: %w", n.Attr, err)
	}
	t := &Test{Attr: n.Attr + ".tests.go", Pos: n.Pos, Of: []store.DrvHash{n.Hash}}
	if spec.Go.Off != "" {
		t.Off = spec.Go.Off
		return t, nil
	}
	d := &store.Derivation{
		Name: n.Drv.Name + "-test", Version: n.Drv.Version, System: n.Drv.System,
		Builder: builtins.GoTest, Args: []string{}, Env: map[string]string{},
		Inputs: map[string]store.DrvHash{},
		Attrs:  map[string]any{"packages": anyList(spec.Go.Packages), "run": spec.Go.Run, "skip": spec.Go.Skip},
	}
	for k, v := range n.Drv.Env {
		d.Env[k] = v
	}
	deps := 0
	for name, h := range n.Drv.Inputs {
		d.Inputs[name] = h
		if strings.HasPrefix(name, "deps.") {
			deps++
		}
	}
	for _, m := range spec.Go.Deps {
		md := &store.Derivation{
			Name: m.Name, Version: m.Version, System: eval.DefaultSystem, Builder: builtins.FetchGoMod,
			Args: []string{}, Env: map[string]string{}, Inputs: map[string]store.DrvHash{},
			Attrs: m.Attrs, OutputHash: m.OutputHash,
		}
		h, err := md.Hash()
		if err != nil {
			return nil, fmt.Errorf("%s.tests.go.deps: %w", n.Attr, err)
		}
		if _, ok := g.Nodes[h]; !ok {
			if t.Extra == nil {
				t.Extra = map[store.DrvHash]*store.Derivation{}
			}
			t.Extra[h] = md
		}
		d.Inputs["deps."+strconv.Itoa(deps)] = h
		deps++
	}
	if err := addStdVet(g, t, d); err != nil {
		return nil, fmt.Errorf("%s: its test: %w", n.Attr, err)
	}
	h, err := d.Hash()
	if err != nil {
		return nil, fmt.Errorf("%s: its test: %w", n.Attr, err)
	}
	t.Hash, t.Drv = h, d
	return t, nil
}

// addStdVet gives the go test d, whose inputs are its program's, the
// input gostdvet that #GoTest gives one written in CUE (defs/tests.cue):
// the #GoStdVet of its compiled std cache, input gostd, which is that
// derivation named go-std-vet, with input gostd and attrs.vet. Nothing
// when d has no gostd.
func addStdVet(g *eval.Graph, t *Test, d *store.Derivation) error {
	gostd, ok := d.Inputs["gostd"]
	if !ok {
		return nil
	}
	n, ok := g.Nodes[gostd]
	if !ok || n.Drv.Builder != builtins.GoStdCache {
		return fmt.Errorf("input gostd is not a #GoStdCache")
	}
	vet := *n.Drv
	vet.Name = "go-std-vet"
	vet.Inputs = maps.Clone(n.Drv.Inputs)
	vet.Inputs["gostd"] = gostd
	vet.Attrs = maps.Clone(n.Drv.Attrs)
	vet.Attrs["vet"] = true
	h, err := vet.Hash()
	if err != nil {
		return err
	}
	if _, ok := g.Nodes[h]; !ok {
		if t.Extra == nil {
			t.Extra = map[store.DrvHash]*store.Derivation{}
		}
		t.Extra[h] = &vet
	}
	d.Inputs["gostdvet"] = h
	return nil
}

// imageTestsOf makes the tests of the image n: each boots it (input
// image) in the host's QEMU, whose version is in the derivation.
func imageTestsOf(n *eval.Node) ([]*Test, error) {
	its, err := imagetest.Parse(n.Attr, n.Meta.Tests)
	if err != nil {
		return nil, err
	}
	var out []*Test
	for i := range its {
		it := &its[i]
		d := &store.Derivation{
			Name: n.Drv.Name + "-test-" + it.Name, Version: n.Drv.Version, System: n.Drv.System,
			Builder: builtins.ImageTest, Args: []string{}, Env: map[string]string{},
			Inputs: map[string]store.DrvHash{"image": n.Hash},
			Attrs:  it.Attrs(imagetest.QEMUVersion()),
		}
		h, err := d.Hash()
		if err != nil {
			return nil, fmt.Errorf("%s.tests.%s: %w", n.Attr, it.Name, err)
		}
		out = append(out, &Test{Hash: h, Drv: d, Attr: n.Attr + ".tests." + it.Name, Pos: n.Pos, Of: []store.DrvHash{n.Hash}, Image: it})
	}
	return out, nil
}

func anyList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// testRules checks the policy's tests rule: it finds the programs and
// images whose closure's tests must have passed. A program whose tests
// are off is a violation now; the other tests need the store, so each
// scope is kept as a deferred rule (a SizeLimit with Tests set) that
// CheckTests checks.
func (c *checker) testRules() {
	if _, ok := c.rule("tests"); !ok {
		return
	}
	type scope struct {
		rule  rule
		root  *eval.Node
		label string
	}
	var scopes []scope
	if all, ok := c.rule("tests.all"); ok {
		if b, _ := all.v.Bool(); b {
			for _, a := range c.g.RootNames() {
				scopes = append(scopes, scope{all, c.g.Nodes[c.g.Roots[a]], "everything"})
			}
		}
	}
	if gr, ok := c.rule("tests.groups"); ok {
		for _, gpath := range gr.strings() {
			found := false
			for _, a := range c.g.RootNames() {
				if a == gpath || strings.HasPrefix(a, gpath+".") {
					found = true
					scopes = append(scopes, scope{gr, c.g.Nodes[c.g.Roots[a]], "group " + gpath})
				}
			}
			if !found && !c.root.LookupPath(cue.ParsePath(gpath)).Exists() {
				c.add(gr.path, gpath, fmt.Sprintf("the configuration has no group %s, whose tests must pass", gpath), gr.pos(), srcpos.Pos{})
			}
		}
	}
	if ir, ok := c.rule("tests.images"); ok {
		names := setOf(ir.strings())
		for _, n := range c.g.SortedNodes() {
			if n.Drv.Builder == builtins.SystemToplevel && (names["*"] || names[n.Drv.Name]) {
				scopes = append(scopes, scope{ir, n, "image " + n.Drv.Name})
			}
		}
	}
	offSeen := map[string]bool{}
	for _, s := range scopes {
		ts, err := Tests(c.g, s.root.Hash)
		if err != nil {
			c.add(s.rule.path, s.root.Attr, err.Error(), s.rule.pos(), s.root.Pos)
			continue
		}
		if strings.HasPrefix(s.label, "group ") && !s.root.Drv.IsFixedOutput() && !isTest(s.root) && !testsOf(ts, s.root.Hash) {
			c.add(s.rule.path, s.root.Attr, fmt.Sprintf("%s has no tests, but %s's tests must pass (give it a #Test whose input subject is it)", s.root.Drv.Name, s.label), s.rule.pos(), s.root.Pos)
		}
		if len(ts) == 0 {
			continue
		}
		// An image's own tests boot what its programs built: a program
		// there whose tests are off (u-root's need QEMU and root) is
		// tested through them.
		imageTested := strings.HasPrefix(s.label, "image ") && hasImageTest(ts, s.root.Hash)
		for _, t := range ts {
			if t.Off != "" && !offSeen[t.Attr] && !imageTested {
				offSeen[t.Attr] = true
				prog := c.g.Nodes[t.Of[0]]
				c.add(s.rule.path, t.Attr, fmt.Sprintf("the tests of %s are off (%s), but %s's tests must pass", prog.Drv.Name, t.Off, s.label), s.rule.pos(), at(prog, "tests.go.off"))
			}
		}
		c.limits = append(c.limits, SizeLimit{Image: s.root.Path(), Attr: s.root.Attr, Rule: s.rule.path, Policy: s.rule.pos(), System: s.root.Pos, Tests: true})
	}
}

// TestStatus says whether a test has a passing result in the store (only
// a passing test's output is ever valid), and whether a path it tests is
// built.
type TestStatus func(*Test) (passed, built bool, err error)

// CheckTests checks the deferred tests rules of limits on g: every test
// of each scope must have a passing result. A test without one is a
// violation when what it tests is built (a path without a passing
// result); else it waits, as a size limit waits for its image. It returns
// the violations, the tests that have no result (what realize runs),
// each once, and how many wait.
func CheckTests(g *eval.Graph, limits []SizeLimit, status TestStatus) (Violations, []*Test, int, error) {
	var vs Violations
	var missing []*Test
	waiting := 0
	req, err := RequiredTests(g, limits)
	if err != nil {
		return nil, nil, 0, err
	}
	for _, r := range req {
		t, l := r.Test, r.Rule
		ok, built, err := status(t)
		if err != nil {
			return nil, nil, 0, err
		}
		if ok {
			continue
		}
		missing = append(missing, t)
		if !built {
			waiting++
			continue
		}
		vs = append(vs, Violation{
			Rule: l.Rule, Attr: t.Attr, Policy: l.Policy, System: t.Pos,
			Text: fmt.Sprintf("%s has no passing result (its tests must pass, for %s; run hephc test)", t.Drv.Name, l.Attr),
		})
	}
	if vs == nil {
		return nil, missing, waiting, nil
	}
	return vs.sorted(), missing, waiting, nil
}

// isTest says whether n is a test derivation.
func isTest(n *eval.Node) bool {
	return n.Drv.Builder == builtins.GoTest || n.Drv.Builder == builtins.RunTest
}

// testsOf says whether one of ts tests h itself.
func testsOf(ts []*Test, h store.DrvHash) bool {
	for _, t := range ts {
		for _, o := range t.Of {
			if o == h {
				return true
			}
		}
	}
	return false
}

// hasImageTest says whether one of ts is a test of the image h.
func hasImageTest(ts []*Test, h store.DrvHash) bool {
	for _, t := range ts {
		if t.Image != nil && t.Of[0] == h {
			return true
		}
	}
	return false
}

// Required is a test the tests rule requires, and the rule's scope.
type Required struct {
	Test *Test
	Rule SizeLimit
}

// RequiredTests returns the tests that the deferred tests rules of limits
// require of g, each once (tests that are off are violations already).
func RequiredTests(g *eval.Graph, limits []SizeLimit) ([]Required, error) {
	var out []Required
	seen := map[store.DrvHash]bool{}
	for _, l := range limits {
		if !l.Tests {
			continue
		}
		ts, err := Tests(g, l.Image.Hash)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if t.Off != "" || seen[t.Hash] {
				continue
			}
			seen[t.Hash] = true
			out = append(out, Required{t, l})
		}
	}
	return out, nil
}
