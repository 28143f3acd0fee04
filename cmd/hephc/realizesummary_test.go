package main

import (
	"testing"

	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// TestRealizeSummary: what realize prints at the end says what another
// process built while this one waited, not that there was nothing to do
// because everything was valid.
func TestRealizeSummary(t *testing.T) {
	p := func(name string) store.Path { return progressPath(name) }
	for _, c := range []struct {
		res  realize.Result
		want string
	}{
		{realize.Result{Paths: []store.Path{p("a"), p("b")}}, "nothing to do: all 2 paths are valid"},
		{realize.Result{Paths: []store.Path{p("a")}, Others: []store.Path{p("a")}}, "nothing left to do: 1 path built by another process"},
		{realize.Result{Paths: []store.Path{p("a")}, Others: []store.Path{p("a"), p("b")}}, "nothing left to do: 2 paths built by another process"},
		{realize.Result{Built: []store.Path{p("a")}, Fetched: []store.Path{p("b")}}, "fetched 1, built 1"},
		{realize.Result{Built: []store.Path{p("a")}, Others: []store.Path{p("b")}}, "fetched 0, built 1; 1 path built by another process"},
	} {
		if got := summary(&c.res); got != c.want {
			t.Errorf("summary(%+v) = %q, want %q", c.res, got, c.want)
		}
	}
}
