package realize

import (
	"context"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/store"
)

// testGraph is a graph of derivations that are only names.
type testGraph struct {
	t *testing.T
	g *store.Graph
}

func newTestGraph(t *testing.T) *testGraph {
	return &testGraph{t, &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}}}
}

func (tg *testGraph) add(name string, inputs map[string]store.DrvHash, fixed bool) store.DrvHash {
	d := &store.Derivation{Name: name, System: "x86_64-linux", Builder: "/b", Inputs: inputs}
	if fixed {
		d.OutputHash = "sha256:" + name
	}
	h, err := d.Hash()
	if err != nil {
		tg.t.Fatal(err)
	}
	tg.g.Derivations[h] = d
	return h
}

// TestSchedulerHandsASlotToTheHighestReady: when a derivation ends, all
// it made ready are queued before its slot is handed on, so the one the
// most work waits on goes next, however the goroutines are scheduled.
func TestSchedulerHandsASlotToTheHighestReady(t *testing.T) {
	tg := newTestGraph(t)
	src := tg.add("src", nil, true)
	std := tg.add("std", nil, false)
	roots := []store.DrvHash{}
	for _, n := range []string{"a", "b", "c", "d"} {
		roots = append(roots, tg.add(n, map[string]store.DrvHash{"std": std}, false))
	}
	big := tg.add("big", map[string]store.DrvHash{"std": std, "src": src}, false)
	image := tg.add("image", map[string]store.DrvHash{"big": big}, false)
	roots = append(roots, image)
	all, err := tg.g.Closure(roots...)
	if err != nil {
		t.Fatal(err)
	}
	// src is valid already: not to build, but big's cost counts it.
	var todo []store.DrvHash
	for _, h := range all {
		if h != src {
			todo = append(todo, h)
		}
	}
	for range 20 {
		var mu sync.Mutex
		var order []string
		var running, most int
		run := func(h store.DrvHash, release func()) {
			mu.Lock()
			order = append(order, tg.g.Derivations[h].Name)
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
		}
		newScheduler(context.Background(), tg.g, todo, nil, 1, 1, run).runAll(todo)
		if len(order) != len(todo) {
			t.Fatalf("ran %v, want all %d", order, len(todo))
		}
		if order[0] != "std" || order[1] != "big" {
			t.Fatalf("builds ran in the order %v; want std, big, then the rest", order)
		}
		if most > 1 {
			t.Fatalf("%d ran at once with one build slot", most)
		}
	}
}

// TestSchedulerStopsStartingWithItsContext: once the context ends,
// nothing more starts, and runAll returns.
func TestSchedulerStopsStartingWithItsContext(t *testing.T) {
	tg := newTestGraph(t)
	a := tg.add("a", nil, false)
	b := tg.add("b", map[string]store.DrvHash{"a": a}, false)
	todo := []store.DrvHash{a, b}
	ctx, cancel := context.WithCancel(context.Background())
	var ran []string
	newScheduler(ctx, tg.g, todo, nil, 2, 2, func(h store.DrvHash, release func()) {
		ran = append(ran, tg.g.Derivations[h].Name)
		release()
		cancel()
	}).runAll(todo)
	if len(ran) != 1 || ran[0] != "a" {
		t.Fatalf("ran %v, want only a", ran)
	}
}

func TestPrioritiesFollowTheLongestChain(t *testing.T) {
	tg := newTestGraph(t)
	g, add := tg.g, tg.add
	src1, src2 := add("src1", nil, true), add("src2", nil, true)
	std := add("std", nil, false)
	big := add("big", map[string]store.DrvHash{"a": src1, "b": src2, "std": std}, false)
	image := add("image", map[string]store.DrvHash{"big": big}, false)
	small := add("small", map[string]store.DrvHash{"std": std}, false)
	todo, err := g.Closure(image, small)
	if err != nil {
		t.Fatal(err)
	}
	w := priorities(g, todo, nil)
	// big compiles two sources (cost 3) and an image waits on it (1);
	// std is under both, so it comes before all of them.
	for _, c := range []struct {
		h    store.DrvHash
		want int
	}{{image, 1}, {big, 4}, {small, 1}, {std, 5}, {src1, 5}} {
		if w[c.h] != c.want {
			t.Errorf("%s: weight %d, want %d", g.Derivations[c.h].Name, w[c.h], c.want)
		}
	}
	// A test that boots small (60) outside the graph puts small's
	// chain first.
	w = priorities(g, todo, map[store.DrvHash]int{small: 60})
	if w[small] != 61 || w[std] != 62 || w[big] != 4 {
		t.Errorf("with 60 after small: small %d, std %d, big %d; want 61, 62, 4", w[small], w[std], w[big])
	}
}
