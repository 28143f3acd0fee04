package realize_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// startOrder records the order in which builds start and end, and when
// each started.
type startOrder struct {
	mu      sync.Mutex
	events  []string
	started map[string]time.Time
}

func (o *startOrder) event(ev realize.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch ev.Kind {
	case realize.EventStarted:
		o.events = append(o.events, "start "+ev.Path.Name)
		if o.started == nil {
			o.started = map[string]time.Time{}
		}
		o.started[ev.Path.Name] = time.Now()
	case realize.EventBuilt:
		o.events = append(o.events, "end "+ev.Path.Name)
	}
}

// TestRealizeStartsTheLongestChainFirst: with one job, the build that
// the most work waits on starts first, whatever the order of the roots.
func TestRealizeStartsTheLongestChainFirst(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	c1 := f.Step(t, "c1", nil, nil, "single=1")
	c2 := f.Step(t, "c2", map[string]store.DrvHash{"c1": c1}, nil, "single=2")
	c3 := f.Step(t, "c3", map[string]store.DrvHash{"c2": c2}, nil, "single=3")
	roots := []store.DrvHash{c3}
	for _, n := range []string{"x1", "x2", "x3", "x4"} {
		roots = append(roots, f.Step(t, n, nil, nil, "single="+n))
	}
	var o startOrder
	if _, err := f.Realize(t, realize.Options{Jobs: 1, Events: o.event}, roots...); err != nil {
		t.Fatal(err)
	}
	if len(o.events) == 0 || o.events[0] != "start c1" {
		t.Fatalf("builds went %v; want c1 (under c2 and c3) first", o.events)
	}
}

// TestRealizeFetchesBesideBuilds: a fetch does not wait for a build
// slot; with one job, a fetch and a build run at once. Had they shared
// one slot, the second could not start before the first's 2 s sleep.
func TestRealizeFetchesBesideBuilds(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	file := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree, err := fstree.HashTree(file, fstree.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fetch := f.Add(t, &store.Derivation{Name: "fetch", Builder: "@{tool}", Args: []string{"sleep=2000", "single=x"},
		Inputs: map[string]store.DrvHash{"tool": f.Tool}, OutputHash: tree.Hash.String()}, "fetch")
	build := f.Step(t, "build", nil, nil, "sleep=2000", "single=y")
	var o startOrder
	if _, err := f.Realize(t, realize.Options{Jobs: 1, FetchJobs: 1, Events: o.event}, fetch, build); err != nil {
		t.Fatal(err)
	}
	gap := o.started["build"].Sub(o.started["fetch"]).Abs()
	if len(o.started) != 2 || gap >= 1500*time.Millisecond {
		t.Fatalf("got %v, the starts %v apart; want the fetch and the build to run at once", o.events, gap)
	}
}
