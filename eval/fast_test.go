package eval_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/internal/benchconfig"
	"hephc.dev/hephc/lang"
)

// fastBoth evaluates the configuration in dir with CUE (lang.Load, Build)
// and on the fast path, and fails t when the fast path gives a graph that
// is not CUE's exactly, or a graph where CUE gives an error. It reports
// whether the fast path handled the configuration. The fast path runs
// three ways, which must agree: with no FileCache, and twice as new
// processes do with one (the first writes it, the second reads it).
// With the whole configuration handled, it does the same for each
// top-level field and each root as the attribute (-A) to evaluate, and
// for an attribute that is not there, with the same FileCache.
func fastBoth(t testing.TB, dir string) bool {
	t.Helper()
	disk := &eval.FileCache{Dir: t.TempDir(), Build: "test"}
	if !fastBothAt(t, dir, "", disk) {
		return false
	}
	g, _ := fastEval(dir, &eval.Fast{})
	attrs := map[string]bool{"nothing.here": true}
	for _, a := range g.RootNames() {
		if len(attrs) < 12 { // CUE evaluates the whole configuration for each
			attrs[a] = true
		}
		attrs[strings.Split(a, ".")[0]] = true
	}
	for a := range attrs {
		fastBothAt(t, dir, a, disk)
	}
	return true
}

func fastBothAt(t testing.TB, dir, attr string, disk *eval.FileCache) bool {
	t.Helper()
	var want *eval.Graph
	var werr error
	cfg, err := lang.NewLoader(dir).Load(dir)
	if err != nil {
		werr = err
	} else {
		want, werr = eval.Build(cfg.Value, eval.Options{Attr: attr})
	}
	got, ok := fastEvalAt(dir, &eval.Fast{}, attr, nil)
	for _, how := range []string{"writing a file cache", "reading the file cache"} {
		g, ok2 := fastEvalAt(dir, &eval.Fast{}, attr, disk)
		if ok2 != ok {
			t.Fatalf("%s -A %q: the fast path %s handled it %v, without one %v", dir, attr, how, ok2, ok)
		}
		if ok && werr == nil {
			if d := graphDiff(want, g); d != "" {
				t.Fatalf("%s -A %q: the fast path's graph %s is not CUE's: %s", dir, attr, how, d)
			}
		}
	}
	if !ok {
		return false
	}
	if werr != nil {
		t.Fatalf("%s -A %q: the fast path gave a graph, CUE an error: %v", dir, attr, werr)
	}
	if d := graphDiff(want, got); d != "" {
		t.Fatalf("%s -A %q: the fast path's graph is not CUE's: %s", dir, attr, d)
	}
	return true
}

func fastEval(dir string, f *eval.Fast) (*eval.Graph, bool) { return fastEvalAt(dir, f, "", nil) }

func fastEvalAt(dir string, f *eval.Fast, attr string, disk *eval.FileCache) (*eval.Graph, bool) {
	_, files, ok := lang.NewLoader(dir).Simple(dir)
	if !ok {
		return nil, false
	}
	srcs, ok := lang.ReadSources(files)
	if !ok {
		return nil, false
	}
	fs := make([]eval.File, len(srcs))
	for i, s := range srcs {
		fs[i] = eval.File{Name: s.Name, Sum: s.Sum, Src: s.Src}
	}
	return f.Build(fs, eval.Options{Attr: attr}, disk)
}

// graphDiff says how two graphs differ ("" when they do not), comparing
// everything but the nodes' CUE values.
func graphDiff(a, b *eval.Graph) string {
	if a.Decoded != b.Decoded {
		return fmt.Sprintf("decoded %d, fast %d", a.Decoded, b.Decoded)
	}
	if !reflect.DeepEqual(a.Roots, b.Roots) {
		return fmt.Sprintf("roots %v, fast %v", a.Roots, b.Roots)
	}
	if len(a.Nodes) != len(b.Nodes) {
		return fmt.Sprintf("%d nodes, fast %d", len(a.Nodes), len(b.Nodes))
	}
	for h, n := range a.Nodes {
		m := b.Nodes[h]
		if m == nil {
			return fmt.Sprintf("node %s (%s) missing", n.Attr, h)
		}
		if !reflect.DeepEqual(n.Drv, m.Drv) {
			return fmt.Sprintf("%s: derivation %+v, fast %+v", n.Attr, n.Drv, m.Drv)
		}
		if !reflect.DeepEqual(n.Meta, m.Meta) || n.Limits != m.Limits || n.Attr != m.Attr || n.Pos != m.Pos {
			return fmt.Sprintf("%s: meta %+v limits %+v attr %s pos %v; fast %+v %+v %s %v", n.Attr, n.Meta, n.Limits, n.Attr, n.Pos, m.Meta, m.Limits, m.Attr, m.Pos)
		}
	}
	return ""
}

// writeArchive writes the files of a txtar archive (not out/ and args)
// under dir and returns the directories holding .cue files.
func writeArchive(t testing.TB, file, dir string) []string {
	ar, err := txtar.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var dirs []string
	for _, f := range ar.Files {
		if strings.HasPrefix(f.Name, "out/") || f.Name == "args" || strings.HasPrefix(f.Name, "/") || strings.Contains(f.Name, "$") {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		if d := filepath.Dir(p); strings.HasSuffix(p, ".cue") && !seen[d] && !strings.Contains(p, "cue.mod") {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	return dirs
}

// TestFastDifferential evaluates every golden case, the CLI's script
// cases, system.cue's directory and the benchmark's configuration both
// ways: wherever the fast path gives a graph it must be CUE's.
func TestFastDifferential(t *testing.T) {
	var cases []string
	for _, g := range []string{"../testdata/golden/*.txtar", "../cmd/hephc/testdata/script/*.txtar"} {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, m...)
	}
	if len(cases) < 100 {
		t.Fatalf("found only %d cases", len(cases))
	}
	handled := 0
	for _, c := range cases {
		for _, d := range writeArchive(t, c, t.TempDir()) {
			if fastBoth(t, d) {
				handled++
			}
		}
	}
	t.Logf("the fast path handled %d of the cases' configurations", handled)
	// system.cue's directory: the fast path refuses it today (helpers,
	// policy); whatever it does must be CUE's.
	fastBoth(t, "..")
	dir := t.TempDir()
	benchconfig.Write(t, dir, 1500)
	if !fastBoth(t, dir) {
		t.Fatal("the fast path refused the benchmark's configuration")
	}
}

// TestFastEdit evaluates a configuration, edits one package and evaluates
// it again, with the same in-memory caches and as a new process does with
// the FileCache the first evaluation wrote: each graph must be CUE's for
// the edit.
func TestFastEdit(t *testing.T) {
	dir := t.TempDir()
	benchconfig.Write(t, dir, 2100)
	f := &eval.Fast{}
	disk := &eval.FileCache{Dir: t.TempDir(), Build: "test"}
	if _, ok := fastEvalAt(dir, f, "", disk); !ok {
		t.Fatal("refused")
	}
	editPackage(t, dir, 1234, 1)
	cfg, err := lang.NewLoader(dir).Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := eval.Build(cfg.Value, eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []*eval.Fast{f, {}} {
		how := []string{"the same process", "a new process"}[i]
		got, ok := fastEvalAt(dir, f, "", disk)
		if !ok {
			t.Fatalf("%s: refused after the edit", how)
		}
		if d := graphDiff(want, got); d != "" {
			t.Fatalf("%s: %s", how, d)
		}
	}
}

// editPackage changes package i of a benchconfig configuration in dir (its
// version, so its hash and every dependent's change); k makes each edit
// different.
func editPackage(t testing.TB, dir string, i, k int) {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("pkgs%03d.cue", i/1000))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("name: \"p%d\"\n\tversion: \"", i)
	s := string(b)
	at := strings.Index(s, old)
	if at < 0 {
		t.Fatalf("package %d not found", i)
	}
	end := at + len(old) + strings.Index(s[at+len(old):], "\"")
	s = s[:end] + fmt.Sprintf("-e%d", k) + s[end:]
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFastCases are shapes the fast path must handle, each with CUE's
// graph.
func TestFastCases(t *testing.T) {
	for name, src := range map[string]string{
		"empty provides": `a: heph.#Derivation & {name: "a", builder: "builtin:exec", meta: provides: []}`,
		"comments and struct inputs": `// a comment
a: heph.#Derivation & {name: "a", builder: "builtin:exec"} // after
b: heph.#Derivation & {
	// inside
	name: "b"
	builder: "@{bin.x}/bin/b"
	inputs: {bin: {x: a, y: c.d}, l: [a, c.d]}
}
c: d: heph.#Derivation & {name: "d", builder: "builtin:exec", version: "2", system: "aarch64-linux", env: {Z: "\t", A_1: "é"}}`,
		"same derivation twice": `x: heph.#Derivation & {name: "a", builder: "builtin:exec"}
a: heph.#Derivation & {name: "a", builder: "builtin:exec"}`,
		// Link visits in the file's order, z first: the graph is the same.
		"the same derivation twice, declared after what uses it": `z: heph.#Derivation & {name: "z", builder: "builtin:exec", inputs: {a: b.c, d: y}}
y: heph.#Derivation & {name: "a", builder: "builtin:exec"}
b: c: heph.#Derivation & {name: "a", builder: "builtin:exec"}`,
		"a fixed output": `src: heph.#Derivation & {name: "src", builder: "builtin:fetch-url", args: ["u"], outputHash: "blake3:` + strings.Repeat("0", 64) + `"}
u: heph.#Derivation & {name: "u", builder: "builtin:exec", inputs: s: src, meta: {license: "(MIT OR Apache-2.0) AND BSD-3-Clause", homepage: "h", channel: "deprecated"}}`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte("package c\n\nimport \"hephc.dev/heph\"\n\n"+src+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if !fastBoth(t, dir) {
			t.Errorf("%s: refused", name)
		}
	}
}
