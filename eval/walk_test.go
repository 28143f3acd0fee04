package eval_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
)

func buildDir(t *testing.T, src string) (*eval.Graph, *lang.Config) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "system.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := lang.NewLoader(dir).Load("system.cue")
	if err != nil {
		t.Fatal(err)
	}
	g, err := eval.Build(cfg.Value, eval.Options{})
	if err != nil {
		t.Fatal(lang.DiagnoseIn(dir, err))
	}
	return g, cfg
}

// TestDiamondLadderIsLinear builds 40 levels of diamonds (2^40 paths from
// the top): each derivation must be decoded exactly once.
func TestDiamondLadderIsLinear(t *testing.T) {
	const levels = 40
	var b strings.Builder
	b.WriteString("package system\n\nimport \"hephc.dev/heph\"\n\n")
	b.WriteString("a0: heph.#Derivation & {name: \"a0\", builder: \"builtin:exec\"}\n")
	b.WriteString("b0: heph.#Derivation & {name: \"b0\", builder: \"builtin:exec\"}\n")
	for i := 1; i < levels; i++ {
		for _, x := range []string{"a", "b"} {
			fmt.Fprintf(&b, "%s%d: heph.#Derivation & {name: \"%s%d\", builder: \"builtin:exec\", inputs: {l: a%d, r: b%d}}\n", x, i, x, i, i-1, i-1)
		}
	}
	g, _ := buildDir(t, b.String())
	if got, want := len(g.Nodes), 2*levels; got != want {
		t.Errorf("got %d nodes, want %d", got, want)
	}
	if got, want := g.Decoded, 2*levels; got != want {
		t.Errorf("decoded %d derivations, want %d (each once)", got, want)
	}
}

// TestCacheMissesOnChange checks that the evaluation cache gives the graph
// back while nothing changed, and misses when a file changes, a .cue file
// is added to the directory, or the entry is damaged.
func TestCacheMissesOnChange(t *testing.T) {
	src := "package system\n\nimport \"hephc.dev/heph\"\n\na: heph.#Derivation & {name: \"a\", builder: \"builtin:exec\"}\n"
	g, cfg := buildDir(t, src)
	cache := &eval.Cache{Dir: t.TempDir()}
	req := eval.Request{Build: "test", Args: cfg.Files}
	g.Deferred = []byte(`[{"max":1}]`)
	if err := cache.Put(req, cfg.Deps, cfg.Dirs, g); err != nil {
		t.Fatal(err)
	}
	got, ok := cache.Get(req)
	if !ok {
		t.Fatal("got a miss right after Put, want a hit")
	}
	if got.Roots["a"] != g.Roots["a"] || len(got.Nodes) != 1 || string(got.Deferred) != string(g.Deferred) {
		t.Fatalf("got roots %v and deferred %q, want %v and %q", got.Roots, got.Deferred, g.Roots, g.Deferred)
	}
	if _, ok := cache.Get(eval.Request{Build: "other", Args: cfg.Files}); ok {
		t.Error("got a hit for another build, want a miss")
	}
	for _, other := range []eval.Request{
		{Build: "test", Args: cfg.Files, Policy: true},
		{Build: "test", Args: cfg.Files, Policy: true, PolicyFiles: []string{"/org/policy.cue"}},
	} {
		if _, ok := cache.Get(other); ok {
			t.Errorf("got a hit for %+v (checked against other policies), want a miss", other)
		}
	}

	// A new .cue file beside the configuration.
	extra := filepath.Join(cfg.Dir, "extra.cue")
	os.WriteFile(extra, []byte("package system\n"), 0o644)
	if _, ok := cache.Get(req); ok {
		t.Error("got a hit after a .cue file was added, want a miss")
	}
	os.Remove(extra)
	if _, ok := cache.Get(req); !ok {
		t.Error("got a miss after the added file was removed, want a hit")
	}

	// The file's content changes.
	os.WriteFile(cfg.Files[0], []byte(strings.Replace(src, `"a"`, `"b"`, 1)), 0o644)
	if _, ok := cache.Get(req); ok {
		t.Error("got a hit after the file changed, want a miss")
	}
	os.WriteFile(cfg.Files[0], []byte(src), 0o644)

	// A damaged entry is a miss, never a wrong graph.
	entries, _ := filepath.Glob(filepath.Join(cache.Dir, "*", "*"))
	if len(entries) != 1 {
		t.Fatalf("got %d cache entries, want 1", len(entries))
	}
	b, _ := os.ReadFile(entries[0])
	for _, n := range []int{len(b) / 2, len(b) - 1, 10} {
		os.WriteFile(entries[0], b[:n], 0o644)
		if _, ok := cache.Get(req); ok {
			t.Errorf("got a hit from an entry cut to %d of %d bytes, want a miss", n, len(b))
		}
	}
}

// TestChangedSince checks the guard that keeps an evaluation whose files
// changed while they were read out of the cache.
func TestChangedSince(t *testing.T) {
	f := filepath.Join(t.TempDir(), "system.cue")
	before := time.Now()
	if err := os.WriteFile(f, []byte("package system\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !eval.ChangedSince(before, []string{f}) {
		t.Error("a file written after the evaluation began: got unchanged, want changed")
	}
	if eval.ChangedSince(time.Now().Add(2*time.Second), []string{f}) {
		t.Error("a file written well before the evaluation began: got changed, want unchanged")
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(f, future, future); err != nil {
		t.Fatal(err)
	}
	if eval.ChangedSince(before, []string{f}) {
		t.Error("a file dated in the future (a clock out of step): got changed, want unchanged")
	}
	if !eval.ChangedSince(time.Now().Add(2*time.Second), []string{f + ".gone"}) {
		t.Error("a file that is gone: got unchanged, want changed")
	}
}
