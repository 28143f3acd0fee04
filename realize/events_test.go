package realize_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// kinds records the events of one realization but its warnings (which
// depend on the host); hook, if not nil, sees each event first.
type kinds struct {
	mu   sync.Mutex
	got  []realize.EventKind
	hook func(realize.Event)
}

func (k *kinds) event(ev realize.Event) {
	if k.hook != nil {
		k.hook(ev)
	}
	if ev.Kind == realize.EventWarning {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.got = append(k.got, ev.Kind)
}

// TestConcurrentRealizeReportsAnotherProcessBuild runs two realizations
// of one derivation on one store, each with its own connection, the
// second starting while the first holds the output's lock: the
// derivation is built once, the first reports it started and built, the
// second that it waited and that the path became valid meanwhile (built
// by another process), never that it started building it.
func TestConcurrentRealizeReportsAnotherProcessBuild(t *testing.T) {
	dir := t.TempDir()
	f := storetest.New(t, dir)
	h := f.Step(t, "shared", nil, nil, "single=s")
	other, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	holding := make(chan struct{}) // the first holds the lock and has not built
	waiting := make(chan struct{}) // the second waits for that lock
	first := &kinds{hook: func(ev realize.Event) {
		if ev.Kind != realize.EventStarted {
			return
		}
		close(holding)
		select {
		case <-waiting:
		case <-time.After(time.Minute):
			t.Error("the second realization never waited for the lock")
		}
	}}
	second := &kinds{hook: func(ev realize.Event) {
		if ev.Kind == realize.EventWaiting {
			close(waiting)
		}
	}}
	var firstRes *realize.Result
	firstErr := make(chan error, 1)
	go func() {
		var err error
		firstRes, err = realize.Realize(context.Background(), f.St, f.G, []store.DrvHash{h}, realize.Options{Events: first.event})
		firstErr <- err
	}()
	select {
	case <-holding:
	case err := <-firstErr:
		t.Fatalf("the first realization ended before it started building: %v", err)
	}
	secondRes, err := realize.Realize(context.Background(), other, f.G, []store.DrvHash{h}, realize.Options{Events: second.event})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-firstErr; err != nil {
		t.Fatal(err)
	}

	if n := storetest.BuildCount(t, f.St, h); n != 1 {
		t.Errorf("built %d times, want once", n)
	}
	if want := []realize.EventKind{realize.EventPlanned, realize.EventStarted, realize.EventBuilt}; !slices.Equal(first.got, want) {
		t.Errorf("the first realization's events: got %v, want %v", first.got, want)
	}
	if want := []realize.EventKind{realize.EventPlanned, realize.EventWaiting, realize.EventValid}; !slices.Equal(second.got, want) {
		t.Errorf("the second realization's events: got %v, want %v (waited, then built by another process)", second.got, want)
	}
	if len(firstRes.Built) != 1 || len(secondRes.Built) != 0 {
		t.Errorf("Result.Built: the first %v, the second %v; want the path once, in the first", firstRes.Built, secondRes.Built)
	}
	if len(firstRes.Others) != 0 || len(secondRes.Others) != 1 || secondRes.Others[0] != f.G.PathOf(h) {
		t.Errorf("Result.Others: the first %v, the second %v; want the path in the second", firstRes.Others, secondRes.Others)
	}
}
