package realize_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// TestRegistrationFailureReachesItsBuild fails the second sync before a
// registration (a disk that cannot write), while builds are registered in
// groups and the next builds run meanwhile: each build whose group it was
// fails with its own BuildError, its dependent is skipped naming it, and
// every other build and dependent is valid.
func TestRegistrationFailureReachesItsBuild(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	var roots []store.DrvHash
	dependent := map[store.DrvHash]store.DrvHash{}
	for i := range 4 {
		b := f.Step(t, fmt.Sprintf("b%d", i), nil, nil, fmt.Sprintf("file=f=%d", i))
		d := f.Step(t, fmt.Sprintf("d%d", i), map[string]store.DrvHash{"b": b}, map[string]string{"B": "@{b}"}, "ref=B")
		dependent[b] = d
		roots = append(roots, d)
	}
	broken := errors.New("I/O error (injected)")
	var mu sync.Mutex
	syncs := 0
	f.St.SyncFS = func() error {
		mu.Lock()
		defer mu.Unlock()
		if syncs++; syncs == 2 {
			return broken
		}
		return nil
	}
	events := map[store.Path]realize.Event{}
	res, err := f.Realize(t, realize.Options{Jobs: 2, KeepGoing: true, Events: func(e realize.Event) {
		if e.Kind == realize.EventBuilt || e.Kind == realize.EventFailed || e.Kind == realize.EventSkipped {
			events[e.Path] = e
		}
	}}, roots...)
	f.St.SyncFS = nil
	if !errors.Is(err, broken) {
		t.Fatalf("got %v, want the sync's error", err)
	}
	failed := 0
	for p, e := range events {
		if e.Kind != realize.EventFailed {
			continue
		}
		failed++
		var be *realize.BuildError
		if !errors.As(e.Err, &be) || be.Path != p || !errors.Is(be, broken) {
			t.Errorf("%s failed with %v, want its own BuildError wrapping the sync's error", p.Name, e.Err)
		}
	}
	if failed == 0 {
		t.Errorf("nothing failed though a sync did (built %d)", len(res.Built))
	}
	for b, d := range dependent {
		pb, pd := f.G.PathOf(b), f.G.PathOf(d)
		eb, ed := events[pb], events[pd]
		switch eb.Kind {
		case realize.EventFailed:
			var de *realize.DependencyError
			if ed.Kind != realize.EventSkipped || !errors.As(ed.Err, &de) || de.Failed != pb {
				t.Errorf("%s: got event %v (%v), want skipped for %s", pd.Name, ed.Kind, ed.Err, pb.Name)
			}
			if v := storetest.Valid(t, f.St, pb, pd); v[pb] || v[pd] {
				t.Errorf("valid after its registration failed: %v", v)
			}
		case realize.EventBuilt:
			if ed.Kind != realize.EventBuilt && !(ed.Kind == realize.EventFailed && errors.Is(ed.Err, broken)) {
				t.Errorf("%s: got event %v (%v), want built", pd.Name, ed.Kind, ed.Err)
			}
			for _, p := range []store.Path{pb, pd} {
				if events[p].Kind == realize.EventBuilt {
					if err := storetest.VerifyPath(f.St, p); err != nil {
						t.Error(err)
					}
				}
			}
		default:
			t.Errorf("%s: got event %v (%v), want built or failed", pb.Name, eb.Kind, eb.Err)
		}
	}
	// Realized again, everything is built.
	if _, err := f.Realize(t, realize.Options{Jobs: 2}, roots...); err != nil {
		t.Fatal(err)
	}
}

// TestNextBuildRunsWhileRegistering holds the sync before the first
// build's registration until the next build has started, with one job at
// a time: a build's slot is free once its output is hashed. Its
// dependent starts only once it is registered.
func TestNextBuildRunsWhileRegistering(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	var roots, builds []store.DrvHash
	for _, name := range []string{"a", "b"} {
		h := f.Step(t, name, nil, nil, "file=f="+name)
		builds = append(builds, h)
		roots = append(roots, f.Step(t, "uses-"+name, map[string]store.DrvHash{"in": h}, map[string]string{"IN": "@{in}"}, "ref=IN"))
	}
	var mu sync.Mutex
	var order []store.Path // started
	second := make(chan struct{})
	syncs := 0
	f.St.SyncFS = func() error {
		mu.Lock()
		syncs++
		first := syncs == 1
		mu.Unlock()
		if !first {
			return nil
		}
		// The first build's registration: the second build starts
		// meanwhile, no dependent does.
		select {
		case <-second:
		case <-time.After(time.Minute):
			t.Error("the second build did not start while the first one's registration waited")
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range order {
			if p.Name != "a" && p.Name != "b" {
				t.Errorf("%s started before its input was registered", p.Name)
			}
		}
		return nil
	}
	_, err := f.Realize(t, realize.Options{Jobs: 1, Events: func(e realize.Event) {
		if e.Kind != realize.EventStarted {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if order = append(order, e.Path); len(order) == 2 {
			close(second)
		}
	}}, roots...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range append(builds, roots...) {
		if err := storetest.VerifyPath(f.St, f.G.PathOf(h)); err != nil {
			t.Error(err)
		}
	}
}
