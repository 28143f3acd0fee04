package gendiff_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/gendiff"
	"hephc.dev/hephc/store"
)

// diffGraph makes a side of n packages, package i depending on i-7,
// i-14, … (up to 5 earlier ones); the packages in bumped get version 2.
func diffGraph(tb testing.TB, n int, bumped map[int]bool) *gendiff.Side {
	g := &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}, Origins: map[store.DrvHash]store.Origin{}}
	side := &gendiff.Side{Graph: g, Roots: map[string]store.DrvHash{}, Sizes: map[store.Path]int64{}}
	hashes := make([]store.DrvHash, n)
	for i := 0; i < n; i++ {
		d := &store.Derivation{Name: fmt.Sprintf("p%d", i), Version: "1", System: "x86_64-linux", Builder: "builtin:exec", Inputs: map[string]store.DrvHash{}}
		if bumped[i] {
			d.Version = "2"
		}
		for k := 1; k <= 5 && i-7*k >= 0; k++ {
			d.Inputs[fmt.Sprintf("d%d", k)] = hashes[i-7*k]
		}
		h, err := d.Hash()
		if err != nil {
			tb.Fatal(err)
		}
		hashes[i] = h
		attr := fmt.Sprintf("pkgs.p%d", i)
		g.Derivations[h] = d
		g.Origins[h] = store.Origin{Attr: attr}
		side.Roots[attr] = h
		side.Sizes[g.PathOf(h)] = int64(1000 + i)
	}
	return side
}

func TestDiffTracesAChangeThroughInputs(t *testing.T) {
	a := diffGraph(t, 30, nil)
	b := diffGraph(t, 30, map[int]bool{3: true})
	d, err := gendiff.Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	// p3 changed; p10, p17, p24 depend on it directly or not.
	got := map[string]string{}
	for _, c := range d.Changed {
		got[c.Key] = fmt.Sprintf("%s→%s", c.OldVersion, c.NewVersion)
	}
	want := map[string]string{"pkgs.p3": "1→2", "pkgs.p10": "1→1", "pkgs.p17": "1→1", "pkgs.p24": "1→1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got changes %v, want %v", got, want)
	}
	for _, c := range d.Changed {
		if len(c.Why) != 1 || c.Why[0].Attr != "pkgs.p3" || c.Why[0].Field != "version" {
			t.Errorf("%s: got why %+v, want pkgs.p3's version", c.Key, c.Why)
		}
	}
	if len(d.Added)+len(d.Removed) != 0 {
		t.Errorf("got added %d, removed %d, want none", len(d.Added), len(d.Removed))
	}
}

// BenchmarkDiff diffs two 10,000-package generations in which 100
// packages changed version (and everything depending on them was rebuilt).
func BenchmarkDiff(b *testing.B) {
	const n = 10000
	bumped := map[int]bool{}
	for i := 0; i < 100; i++ {
		bumped[(i*9973)%n] = true
	}
	b.Run(fmt.Sprintf("packages=%d", n), func(b *testing.B) {
		old := diffGraph(b, n, nil)
		new := diffGraph(b, n, bumped)
		b.ResetTimer()
		for b.Loop() {
			d, err := gendiff.Compare(old, new)
			if err != nil {
				b.Fatal(err)
			}
			if len(d.Changed) < 100 {
				b.Fatalf("got %d changes, want at least 100", len(d.Changed))
			}
		}
	})
}

// initramfs adds an initramfs derivation written at attr, with services,
// built by builder.
func initramfs(t *testing.T, side *gendiff.Side, attr, builder string, services map[string]any) {
	t.Helper()
	d := &store.Derivation{Name: "initramfs", System: "x86_64-linux", Builder: builder, Attrs: map[string]any{"services": services}}
	h, err := d.Hash()
	if err != nil {
		t.Fatal(err)
	}
	side.Graph.Derivations[h] = d
	side.Graph.Origins[h] = store.Origin{Attr: attr}
	side.Roots[attr] = h
}

func TestDiffServices(t *testing.T) {
	a, b := diffGraph(t, 3, nil), diffGraph(t, 3, nil)
	ssh := map[string]any{"command": "/bin/sshd"}
	initramfs(t, a, "images.server.initramfs", builtins.Uroot, map[string]any{"sshd": ssh, "telnetd": map[string]any{"command": "/bin/telnetd"}})
	initramfs(t, b, "images.server.initramfs", builtins.Uroot, map[string]any{"sshd": map[string]any{"command": "/bin/sshd\n", "args": []any{"-D"}}, "sentinel": ssh})
	// A derivation that is not an initramfs has no services, whatever
	// its attrs say.
	initramfs(t, b, "pkgs.other", "@{tool}/bin/x", map[string]any{"fake": ssh})
	d, err := gendiff.Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range d.Services {
		got = append(got, fmt.Sprintf("%s %s %s: %q → %q", s.Image, s.Service, s.Field, s.Old, s.New))
	}
	// A service on both sides is diffed per field; values are written as
	// CUE writes them, a string's newline as \n.
	want := []string{
		`images.server sentinel : "" → "{command: \"/bin/sshd\"}"`,
		`images.server sshd args: "" → "[\"-D\"]"`,
		`images.server sshd command: "\"/bin/sshd\"" → "\"/bin/sshd\\n\""`,
		`images.server telnetd : "{command: \"/bin/telnetd\"}" → ""`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got services\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// graph is a side built by hand: add puts a derivation at attr.
type graph struct {
	t    *testing.T
	side *gendiff.Side
}

func newGraph(t *testing.T) *graph {
	return &graph{t, &gendiff.Side{Graph: &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}, Origins: map[store.DrvHash]store.Origin{}}, Roots: map[string]store.DrvHash{}, Sizes: map[store.Path]int64{}}}
}

func (g *graph) add(attr string, d *store.Derivation) store.DrvHash {
	g.t.Helper()
	if d.System == "" {
		d.System = "x86_64-linux"
	}
	h, err := d.Hash()
	if err != nil {
		g.t.Fatal(err)
	}
	g.side.Graph.Derivations[h] = d
	g.side.Graph.Origins[h] = store.Origin{Attr: attr}
	return h
}

// module is a #GoModule as the schema writes it: name, attrs and
// outputHash made from path, version and sum.
func (g *graph) module(attr, path, version, sum string) store.DrvHash {
	name := strings.NewReplacer("/", "-").Replace(path) + "-" + version
	return g.add(attr, &store.Derivation{Name: name, Version: version, Builder: builtins.FetchGoMod,
		Attrs: map[string]any{"module": path, "version": version}, OutputHash: sum})
}

// program is a #GoProgram of src (its version src's) with deps.
func (g *graph) program(attr string, src store.DrvHash, deps ...store.DrvHash) store.DrvHash {
	in := map[string]store.DrvHash{"src": src}
	for i, d := range deps {
		in[fmt.Sprintf("deps.%d", i)] = d
	}
	d := &store.Derivation{Name: "age", Version: g.side.Graph.Derivations[src].Version, Builder: builtins.GoBuild,
		Attrs: map[string]any{"packages": []any{"."}, "ldflags": "-s -w"}, Inputs: in}
	h := g.add(attr, d)
	g.side.Roots[attr] = h
	return h
}

func whyOf(d *gendiff.Diff) map[string][]string {
	out := map[string][]string{}
	for _, c := range d.Changed {
		for _, r := range c.Why {
			out[c.Key] = append(out[c.Key], fmt.Sprintf("%s.%s: %s → %s via %v", r.Attr, r.Field, r.Old, r.New, r.Via))
		}
	}
	return out
}

func checkWhy(t *testing.T, d *gendiff.Diff, want map[string][]string) {
	t.Helper()
	got := whyOf(d)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got causes\n%s\nwant\n%s", fmtWhy(got), fmtWhy(want))
	}
}

func fmtWhy(m map[string][]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s:\n\t%s\n", k, strings.Join(m[k], "\n\t"))
	}
	return b.String()
}

// A #GoModule's version bump changes its version, name, attrs.version
// and pin: one edit, said once, as the version; a program whose version is
// its source's is changed by that edit, not by its own version.
func TestDiffOneCausePerEdit(t *testing.T) {
	side := func(version, sum string) *gendiff.Side {
		g := newGraph(t)
		sys := g.module("modules.x_sys", "golang.org/x/sys", "v0.1.0", "h1:sys=")
		src := g.module("base.age.inputs.src", "filippo.io/age", version, sum)
		g.program("base.age", src, sys)
		return g.side
	}
	d, err := gendiff.Compare(side("v1.2.0", "h1:old="), side("v1.3.0", "h1:new="))
	if err != nil {
		t.Fatal(err)
	}
	checkWhy(t, d, map[string][]string{
		"base.age":            {"base.age.inputs.src.version: v1.2.0 → v1.3.0 via [inputs.src]"},
		"base.age.inputs.src": {"base.age.inputs.src.version: v1.2.0 → v1.3.0 via []"},
	})
	// The pin alone is a cause; so is the module's path, as written.
	d, err = gendiff.Compare(side("v1.2.0", "h1:old="), side("v1.2.0", "h1:new="))
	if err != nil {
		t.Fatal(err)
	}
	if w := whyOf(d)["base.age.inputs.src"]; fmt.Sprint(w) != "[base.age.inputs.src.outputHash: h1:old= → h1:new= via []]" {
		t.Errorf("a new pin alone: got causes %v", w)
	}
	g := newGraph(t)
	g.program("base.age", g.module("base.age.inputs.src", "filippo.io/age2", "v1.2.0", "h1:new="))
	d, err = gendiff.Compare(side("v1.2.0", "h1:old="), g.side)
	if err != nil {
		t.Fatal(err)
	}
	if w := whyOf(d)["base.age.inputs.src"]; fmt.Sprint(w) != `[base.age.inputs.src.path: "filippo.io/age" → "filippo.io/age2" via []]` {
		t.Errorf("a new module path: got causes %v", w)
	}
}

// Elements of a list of inputs are paired by identity: inserting one
// module into deps is one cause, and a dep replaced by another version of
// the same module (written elsewhere) is that module's version.
func TestDiffPairsListInputsByIdentity(t *testing.T) {
	side := func(insert, bump bool) *gendiff.Side {
		g := newGraph(t)
		var deps []store.DrvHash
		for i, m := range []string{"a", "b", "c", "d"} {
			if insert && i == 1 {
				deps = append(deps, g.module("modules.new", "example.com/new", "v1.0.0", "h1:n="))
			}
			attr, version := "modules."+m, "v1.0.0"
			if bump && m == "c" {
				attr, version = "modules.c_v2", "v2.0.0"
			}
			deps = append(deps, g.module(attr, "example.com/"+m, version, "h1:"+version+"="))
		}
		g.program("base.age", g.module("base.age.inputs.src", "filippo.io/age", "v1.0.0", "h1:age="), deps...)
		return g.side
	}
	d, err := gendiff.Compare(side(false, false), side(true, false))
	if err != nil {
		t.Fatal(err)
	}
	checkWhy(t, d, map[string][]string{"base.age": {"base.age.inputs.deps[1]:  → modules.new via []"}})
	d, err = gendiff.Compare(side(false, false), side(true, true))
	if err != nil {
		t.Fatal(err)
	}
	checkWhy(t, d, map[string][]string{"base.age": {
		"base.age.inputs.deps[1]:  → modules.new via []",
		"modules.c_v2.version: v1.0.0 → v2.0.0 via [inputs.deps[3]]",
	}})
}

// Lists are diffed element by element around what they share: an
// argument inserted is one change.
func TestDiffListInsertion(t *testing.T) {
	side := func(args ...string) *gendiff.Side {
		g := newGraph(t)
		g.side.Roots["pkgs.x"] = g.add("pkgs.x", &store.Derivation{Name: "x", Builder: "/bin/sh", Args: args})
		return g.side
	}
	d, err := gendiff.Compare(side("a", "b", "c", "d"), side("a", "new", "b", "c", "D"))
	if err != nil {
		t.Fatal(err)
	}
	checkWhy(t, d, map[string][]string{"pkgs.x": {"pkgs.x.args[1]:  → new via []", "pkgs.x.args[4]: d → D via []"}})
}

// Empty lists are [] in JSON, never null.
func TestDiffJSONEmptyLists(t *testing.T) {
	a := diffGraph(t, 3, nil)
	d, err := gendiff.Compare(a, a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"added", "removed", "changed", "services"} {
		if !strings.Contains(string(b), `"`+f+`":[]`) {
			t.Errorf("%s is not [] in %s", f, b)
		}
	}
}

// The closure is the runtime one (the roots' outputs and what they refer
// to, or a generation object's); with build inputs, every output the
// graph built.
func TestDiffClosureSizes(t *testing.T) {
	g := newGraph(t)
	tool := g.add("tool", &store.Derivation{Name: "tool", Builder: "/bin/sh"})
	lib := g.add("pkgs.lib", &store.Derivation{Name: "lib", Builder: "@{tool}", Inputs: map[string]store.DrvHash{"tool": tool}})
	app := g.add("pkgs.app", &store.Derivation{Name: "app", Builder: "@{tool}", Inputs: map[string]store.DrvHash{"tool": tool, "lib": lib}})
	s := g.side
	s.Roots["pkgs.app"] = app
	p := s.Graph.PathOf
	s.Sizes = map[store.Path]int64{p(tool): 1000, p(lib): 20, p(app): 3}
	s.Refs = map[store.Path][]store.Path{p(app): {p(lib)}}
	top := store.Path{Hash: store.HashDerivation([]byte("top")), Name: "dev-generation"}
	d, err := gendiff.Compare(s, s)
	if err != nil {
		t.Fatal(err)
	}
	if d.ClosureBefore != 23 || d.BuildBefore != 1023 {
		t.Errorf("got closure %d, with build inputs %d; want 23 and 1023", d.ClosureBefore, d.BuildBefore)
	}
	t2 := *s
	t2.Top, t2.Sizes, t2.Refs = top, maps.Clone(s.Sizes), maps.Clone(s.Refs)
	t2.Sizes[top], t2.Refs[top] = 100, []store.Path{p(app)}
	if d, err = gendiff.Compare(&t2, &t2); err != nil {
		t.Fatal(err)
	}
	if d.ClosureBefore != 123 {
		t.Errorf("got closure %d; want the generation object's, 123", d.ClosureBefore)
	}
	// A generation and something else: both by their roots.
	u := *s
	u.Sizes = map[store.Path]int64{p(tool): 1000}
	if d, err = gendiff.Compare(&t2, &u); err != nil {
		t.Fatal(err)
	}
	if d.ClosureBefore != 23 || d.ClosureAfter != gendiff.Unknown {
		t.Errorf("got closures %d → %d; want the roots', 23, and unknown (app not valid)", d.ClosureBefore, d.ClosureAfter)
	}
}

// Deps reordered, nothing else: the order is the cause.
func TestDiffInputsReordered(t *testing.T) {
	side := func(order ...string) *gendiff.Side {
		g := newGraph(t)
		var deps []store.DrvHash
		for _, m := range order {
			deps = append(deps, g.module("modules."+m, "example.com/"+m, "v1.0.0", "h1:"+m+"="))
		}
		g.program("base.age", g.module("base.age.inputs.src", "filippo.io/age", "v1.0.0", "h1:age="), deps...)
		return g.side
	}
	d, err := gendiff.Compare(side("a", "b"), side("b", "a"))
	if err != nil {
		t.Fatal(err)
	}
	checkWhy(t, d, map[string][]string{"base.age": {`base.age.inputs.deps: ["modules.a", "modules.b"] → ["modules.b", "modules.a"] via []`}})
}
