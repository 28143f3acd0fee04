package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// progress shows a realization: on a terminal one live status line (built
// / to build, fetched bytes, current builds); otherwise one plain line per
// start and end.
type progress struct {
	e        *env
	live     bool
	mu       sync.Mutex
	planned  int
	finished int
	fetched  int64
	running  map[store.Path]bool
	last     time.Time
}

func newProgress(e *env) *progress {
	live := false
	if f, ok := e.stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && e.getenv("TERM") != "dumb" {
			live = true
		}
	}
	return &progress{e: e, live: live, running: make(map[store.Path]bool)}
}

func (p *progress) event(ev realize.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	verb := "building"
	if ev.Fixed {
		verb = "fetching"
	}
	switch ev.Kind {
	case realize.EventPlanned:
		p.planned++
		return
	case realize.EventStarted:
		p.running[ev.Path] = true
		if !p.live {
			fmt.Fprintf(p.e.stderr, "%s %s\n", verb, ev.Path)
		}
	case realize.EventBuilt, realize.EventValid, realize.EventSubstituted:
		delete(p.running, ev.Path)
		p.finished++
		if ev.Fixed {
			p.fetched += ev.Size
		}
	case realize.EventFailed:
		delete(p.running, ev.Path)
		p.finished++
		p.clear()
		fmt.Fprintf(p.e.stderr, "failed %s\n", ev.Path)
	case realize.EventSkipped:
		p.finished++
	case realize.EventWarning:
		p.clear()
		fmt.Fprintf(p.e.stderr, "hephc: warning: %s\n", ev.Warning)
	}
	if p.live && time.Since(p.last) > 50*time.Millisecond {
		p.draw()
	}
}

func (p *progress) clear() {
	if p.live {
		fmt.Fprint(p.e.stderr, "\r\033[K")
	}
}

func (p *progress) draw() {
	p.last = time.Now()
	names := make([]string, 0, len(p.running))
	for path := range p.running {
		names = append(names, path.Name)
	}
	sort.Strings(names)
	line := fmt.Sprintf("[%d/%d done, %s fetched] %s", p.finished, p.planned, store.FormatSize(p.fetched), strings.Join(names, ", "))
	if len(line) > 120 {
		line = line[:117] + "..."
	}
	fmt.Fprintf(p.e.stderr, "\r\033[K%s", line)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live && p.planned > 0 {
		p.clear()
	}
}
