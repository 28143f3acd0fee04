package main

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// fakeClock is progress's clock in tests: time moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func progressPath(name string) store.Path {
	return store.Path{Hash: store.DrvHash{byte(len(name)), name[0]}, Name: name}
}

// step is an event, or a tick of the ticker, d after the step before.
type step struct {
	d    time.Duration
	ev   realize.Event
	tick bool
}

func at(d time.Duration, ev realize.Event) step { return step{d: d, ev: ev} }
func tickAt(d time.Duration) step               { return step{d: d, tick: true} }

// progressRun is one realization as events: a fetch, a long build (the
// ticker ticks meanwhile), a path another process built while this one
// waited, a failed build and what depended on it.
func progressRun() []step {
	src, tool, lib, bad, top := progressPath("src"), progressPath("tool"), progressPath("lib"), progressPath("bad"), progressPath("top")
	ms := time.Millisecond
	return []step{
		at(0, realize.Event{Kind: realize.EventPlanned, Path: src, Fixed: true}),
		at(0, realize.Event{Kind: realize.EventPlanned, Path: tool}),
		at(0, realize.Event{Kind: realize.EventPlanned, Path: lib}),
		at(0, realize.Event{Kind: realize.EventPlanned, Path: bad}),
		at(0, realize.Event{Kind: realize.EventPlanned, Path: top}),
		at(0, realize.Event{Kind: realize.EventWarning, Warning: "no memory limit here"}),
		at(100*ms, realize.Event{Kind: realize.EventStarted, Path: src, Fixed: true}),
		tickAt(0),
		at(50*ms, realize.Event{Kind: realize.EventWaiting, Path: lib}),
		at(750*ms, realize.Event{Kind: realize.EventBuilt, Path: src, Fixed: true, Size: 3 << 20}),
		at(0, realize.Event{Kind: realize.EventStarted, Path: tool}),
		tickAt(time.Second),
		tickAt(time.Second),
		tickAt(time.Second),
		at(1200*ms, realize.Event{Kind: realize.EventBuilt, Path: tool, Size: 1 << 10}),
		at(time.Second, realize.Event{Kind: realize.EventValid, Path: lib, Size: 5}),
		at(0, realize.Event{Kind: realize.EventStarted, Path: bad}),
		at(65*time.Second, realize.Event{Kind: realize.EventFailed, Path: bad, Err: errors.New("exit 7")}),
		at(0, realize.Event{Kind: realize.EventSkipped, Path: top, Err: &realize.DependencyError{Path: top, Failed: bad}}),
	}
}

func runProgress(live bool, steps []step) string {
	c := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var buf bytes.Buffer
	p := newProgressTo(&buf, live, c.now)
	for _, s := range steps {
		c.t = c.t.Add(s.d)
		if s.tick {
			p.tick()
		} else {
			p.event(s.ev)
		}
	}
	p.finish()
	return buf.String()
}

func TestProgressOffTerminal(t *testing.T) {
	got := runProgress(false, progressRun())
	want := strings.Join([]string{
		"hephc: warning: no memory limit here",
		"fetching " + progressPath("src").String(),
		"waiting for " + progressPath("lib").String() + ": another process is building it",
		"[1/5] fetched src 3.0 MiB in 800ms",
		"building " + progressPath("tool").String(),
		"[2/5] built tool in 4.2s",
		"[3/5] lib: built by another process",
		"building " + progressPath("bad").String(),
		"[4/5] failed bad after 1m5s",
		"[5/5] not built top: its dependency bad failed",
	}, "\n") + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestProgressTerminal checks the status line: drawn on the first event
// that is not a plan, redrawn no more often than redrawEvery, by the
// ticker while nothing happens (the elapsed times move), and removed by
// finish; failures, another process's builds and warnings stay above it.
func TestProgressTerminal(t *testing.T) {
	got := runProgress(true, progressRun())
	got = strings.ReplaceAll(strings.ReplaceAll(got, "\n\r\033[K", "\r\033[K"), "\r\033[K", "\n<clear>")
	waiting := "lib (waiting for another process)"
	want := strings.Join([]string{
		"hephc: warning: no memory limit here",
		"<clear>[0s 0/5 done, 0 B fetched]",
		// src's start, a tick and lib's wait come within redrawEvery
		"<clear>[0s 1/5 done, 3.0 MiB fetched] " + waiting,
		// tool's start comes at once; three ticks
		"<clear>[1s 1/5 done, 3.0 MiB fetched] " + waiting + ", tool (1s)",
		"<clear>[2s 1/5 done, 3.0 MiB fetched] " + waiting + ", tool (2s)",
		"<clear>[3s 1/5 done, 3.0 MiB fetched] " + waiting + ", tool (3s)",
		"<clear>[5s 2/5 done, 3.0 MiB fetched] " + waiting,
		"<clear>[3/5] lib: built by another process",
		"<clear>[6s 3/5 done, 3.0 MiB fetched]",
		"<clear>[4/5] failed bad after 1m5s",
		"<clear>[1m11s 4/5 done, 1 failed, 3.0 MiB fetched]",
		"<clear>[5/5] not built top: its dependency bad failed",
		"<clear>[1m11s 5/5 done, 1 failed, 3.0 MiB fetched]",
		"<clear>",
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestProgressStatusFitsTheTerminal(t *testing.T) {
	c := &fakeClock{}
	var buf bytes.Buffer
	p := newProgressTo(&buf, true, c.now)
	p.width = func() int { return 40 }
	for _, name := range []string{"alpha", "beta", "gamma", "delta", "epsilon"} {
		p.event(realize.Event{Kind: realize.EventPlanned, Path: progressPath(name)})
		p.event(realize.Event{Kind: realize.EventStarted, Path: progressPath(name)})
	}
	c.t = c.t.Add(time.Second)
	p.tick()
	last := buf.String()[strings.LastIndex(buf.String(), "\r\033[K")+4:]
	if want := "[1s 0/5 done, 0 B fetched] alpha (1s..."; last != want {
		t.Errorf("got status %q, want %q (39 columns)", last, want)
	}
	p.finish()
	p.finish() // twice is harmless
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		35 * time.Millisecond:   "35ms",
		4240 * time.Millisecond: "4.2s",
		83 * time.Second:        "1m23s",
		2 * time.Hour:           "2h0m0s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestProgressTickerStopsOnFinish runs the real ticker (under -race, with
// events from several goroutines, as realize sends them): finish stops it
// and leaves a clean line; nothing is written after.
func TestProgressTickerStopsOnFinish(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressTo(&buf, true, time.Now)
	p.tickEvery = time.Millisecond
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c"} {
		p.event(realize.Event{Kind: realize.EventPlanned, Path: progressPath(name)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.event(realize.Event{Kind: realize.EventStarted, Path: progressPath(name)})
			time.Sleep(5 * time.Millisecond)
			p.event(realize.Event{Kind: realize.EventBuilt, Path: progressPath(name)})
		}()
	}
	wg.Wait()
	p.finish()
	out := buf.String()
	if !strings.HasPrefix(out, "\r\033[K[") || !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("got %q, want a status line, then cleared", out)
	}
	time.Sleep(5 * time.Millisecond)
	if buf.String() != out {
		t.Errorf("written after finish: %q", buf.String()[len(out):])
	}
}
