package eval_test

import (
	"testing"
	"time"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/store"
)

// TestLimitsAreNotHashed: a derivation's limits are kept beside it, in
// the graph and through the evaluation cache, and never change its hash.
func TestLimitsAreNotHashed(t *testing.T) {
	const head = "package system\n\nimport \"hephc.dev/heph\"\n\n"
	plain, _ := buildDir(t, head+`a: heph.#Derivation & {name: "a", builder: "builtin:exec"}`+"\n")
	limited, cfg := buildDir(t, head+`a: heph.#Derivation & {name: "a", builder: "builtin:exec", limits: {memory: 64Mi, pids: 10, tmp: 1Mi, disk: 2Mi, timeout: "90s"}}`+"\n")
	if plain.Roots["a"] != limited.Roots["a"] {
		t.Fatalf("limits changed the hash: %s, with limits %s", plain.Roots["a"], limited.Roots["a"])
	}
	want := store.Limits{Memory: 64 << 20, Pids: 10, Tmp: 1 << 20, Disk: 2 << 20, Timeout: 90 * time.Second}
	if got := limited.Nodes[limited.Roots["a"]].Limits; got != want {
		t.Errorf("got limits %+v, want %+v", got, want)
	}
	if got := plain.Nodes[plain.Roots["a"]].Limits; got != (store.Limits{}) {
		t.Errorf("a derivation without limits got %+v", got)
	}

	cache := &eval.Cache{Dir: t.TempDir()}
	req := eval.Request{Build: "test", Args: cfg.Files}
	if err := cache.Put(req, cfg.Deps, cfg.Dirs, limited); err != nil {
		t.Fatal(err)
	}
	got, ok := cache.Get(req)
	if !ok {
		t.Fatal("cache miss")
	}
	if l := got.Nodes[limited.Roots["a"]].Limits; l != want {
		t.Errorf("from the cache: limits %+v, want %+v", l, want)
	}
}
