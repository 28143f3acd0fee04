package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// progress renders realize's events for people.
//
// Off a terminal (a log, a pipe, CI) it prints one line per start and one
// per end, the end with how many of the planned derivations are done and
// how long it took:
//
//	building /heph/store/…-tomlv
//	[3/12] built tomlv in 4.2s
//	[4/12] fetched x_crypto 1.2 MiB in 0.8s
//	[5/12] failed age after 2.1s
//	[6/12] tomlv: built by another process
//
// On a terminal it keeps one status line at the bottom, redrawn at most
// every redrawEvery and at least every tickEvery (so the elapsed times move
// while nothing happens): the time since the start, the counts, the bytes
// fetched and what runs now, each with its own time. Only what a person
// must see stays above it: failures, paths another process built,
// warnings. Nothing but durations depends on timing.
type progress struct {
	w     io.Writer
	live  bool
	now   func() time.Time
	width func() int // the terminal's columns, for the status line
	// tickEvery is how often the status line is redrawn while nothing
	// happens; 0 starts no ticker (a test calls tick).
	tickEvery time.Duration

	mu       sync.Mutex
	began    time.Time
	planned  int
	finished int
	failed   int
	fetched  int64 // bytes of outputs fetched or substituted
	running  map[store.Path]*job
	shown    bool   // the status line is on the screen
	lastLine string // and says this
	lastDraw time.Time
	ticking  bool
	done     bool          // finish was called
	stop     chan struct{} // closed by finish: the ticker ends
	stopped  chan struct{} // closed by the ticker when it has ended
}

// job is a derivation started (or waited for) and not yet ended.
type job struct {
	since   time.Time
	fixed   bool
	waiting bool // another process holds its lock
}

const (
	redrawEvery = 200 * time.Millisecond
	tickEvery   = 250 * time.Millisecond
)

func newProgress(e *env) *progress {
	live, width := false, func() int { return 80 }
	if f, ok := e.stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && e.getenv("TERM") != "dumb" {
			live = true
			width = func() int {
				if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
					return int(ws.Col)
				}
				return 80
			}
		}
	}
	p := newProgressTo(e.stderr, live, time.Now)
	p.width, p.tickEvery = width, tickEvery
	return p
}

// newProgressTo renders to w, as a terminal's status line if live, with
// now as its clock; it starts no ticker.
func newProgressTo(w io.Writer, live bool, now func() time.Time) *progress {
	return &progress{
		w: w, live: live, now: now, width: func() int { return 80 },
		began: now(), running: make(map[store.Path]*job),
		stop: make(chan struct{}), stopped: make(chan struct{}),
	}
}

// event is realize.Options.Events.
func (p *progress) event(ev realize.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.live && !p.ticking && !p.done && p.tickEvery > 0 {
		p.ticking = true
		go p.ticker()
	}
	var line string // a line for the record; off a terminal, every line
	always := false // printed on a terminal too
	switch ev.Kind {
	case realize.EventPlanned:
		p.planned++
	case realize.EventWarning:
		line, always = "hephc: warning: "+ev.Warning, true
	case realize.EventWaiting:
		p.running[ev.Path] = &job{since: now, fixed: ev.Fixed, waiting: true}
		line = fmt.Sprintf("waiting for %s: another process is %s it", ev.Path, verb(ev.Fixed, "building", "fetching"))
	case realize.EventStarted:
		p.running[ev.Path] = &job{since: now, fixed: ev.Fixed}
		line = fmt.Sprintf("%s %s", verb(ev.Fixed, "building", "fetching"), ev.Path)
	default:
		line, always = p.end(ev, now)
	}
	if line != "" && (always || !p.live) {
		p.clearLine()
		fmt.Fprintln(p.w, line)
	}
	if p.live && ev.Kind != realize.EventPlanned && (!p.shown || always || now.Sub(p.lastDraw) >= redrawEvery) {
		p.draw(now)
	}
}

// say prints a line for the record above the status line: what runs
// beside realize's builds (an image test's boot).
func (p *progress) say(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLine()
	fmt.Fprintln(p.w, line)
	if p.live && !p.done {
		p.draw(p.now())
	}
}

// end counts a derivation's end and says it: the line, and whether a
// terminal keeps it too.
func (p *progress) end(ev realize.Event, now time.Time) (line string, always bool) {
	j := p.running[ev.Path]
	delete(p.running, ev.Path)
	p.finished++
	count := fmt.Sprintf("[%d/%d] ", p.finished, p.planned)
	took := ""
	if j != nil {
		took = humanDuration(now.Sub(j.since))
	}
	name := ev.Path.Name
	switch ev.Kind {
	case realize.EventBuilt:
		if ev.Fixed {
			p.fetched += ev.Size
			return fmt.Sprintf("%sfetched %s %s in %s", count, name, store.FormatSize(ev.Size), took), false
		}
		return fmt.Sprintf("%sbuilt %s in %s", count, name, took), false
	case realize.EventSubstituted:
		p.fetched += ev.Size
		return fmt.Sprintf("%ssubstituted %s %s in %s", count, name, store.FormatSize(ev.Size), took), false
	case realize.EventValid:
		return fmt.Sprintf("%s%s: %s by another process", count, name, verb(ev.Fixed, "built", "fetched")), true
	case realize.EventFailed:
		p.failed++
		if j == nil || j.waiting {
			return fmt.Sprintf("%sfailed %s", count, name), true
		}
		return fmt.Sprintf("%sfailed %s after %s", count, name, took), true
	case realize.EventSkipped:
		var dep *realize.DependencyError
		if errors.As(ev.Err, &dep) {
			return fmt.Sprintf("%snot built %s: its dependency %s failed", count, name, dep.Failed.Name), true
		}
		if j != nil {
			return fmt.Sprintf("%sstopped %s after %s: another build failed", count, name, took), true
		}
	}
	return "", false
}

func verb(fixed bool, build, fetch string) string {
	if fixed {
		return fetch
	}
	return build
}

// humanDuration rounds d to what a person reads: milliseconds under a
// second, tenths under a minute, seconds above.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// status is the terminal's status line: elapsed time, counts, bytes
// fetched, then what runs, longest-running first, each with its time.
func (p *progress) status(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s %d/%d done", now.Sub(p.began).Truncate(time.Second), p.finished, p.planned)
	if p.failed > 0 {
		fmt.Fprintf(&b, ", %d failed", p.failed)
	}
	fmt.Fprintf(&b, ", %s fetched]", store.FormatSize(p.fetched))
	paths := make([]store.Path, 0, len(p.running))
	for path := range p.running {
		paths = append(paths, path)
	}
	sort.Slice(paths, func(i, k int) bool {
		a, c := p.running[paths[i]], p.running[paths[k]]
		if !a.since.Equal(c.since) {
			return a.since.Before(c.since)
		}
		if paths[i].Name != paths[k].Name {
			return paths[i].Name < paths[k].Name
		}
		return paths[i].String() < paths[k].String()
	})
	for i, path := range paths {
		sep := ", "
		if i == 0 {
			sep = " "
		}
		j := p.running[path]
		what := now.Sub(j.since).Truncate(time.Second).String()
		if j.waiting {
			what = "waiting for another process"
		}
		fmt.Fprintf(&b, "%s%s (%s)", sep, path.Name, what)
	}
	line := b.String()
	if w, r := p.width()-1, []rune(line); w > 3 && len(r) > w {
		line = string(r[:w-3]) + "..."
	}
	return line
}

func (p *progress) draw(now time.Time) {
	p.lastDraw = now
	line := p.status(now)
	if p.shown && line == p.lastLine {
		return
	}
	p.shown, p.lastLine = true, line
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// clearLine removes the status line, if it is shown, before a line is
// printed for the record.
func (p *progress) clearLine() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

// tick redraws the status line if it has not been drawn for a while: the
// elapsed times move even when no event arrives.
func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := p.now(); p.shown && now.Sub(p.lastDraw) >= redrawEvery {
		p.draw(now)
	}
}

func (p *progress) ticker() {
	defer close(p.stopped)
	t := time.NewTicker(p.tickEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.tick()
		case <-p.stop:
			return
		}
	}
}

// finish stops the ticker and removes the status line: what follows is
// printed on a clean line.
func (p *progress) finish() {
	p.mu.Lock()
	ticking, done := p.ticking, p.done
	p.done = true
	p.mu.Unlock()
	if done {
		return
	}
	close(p.stop)
	if ticking {
		<-p.stopped
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLine()
}
