package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// monitor checks the image every interval, prints the result on the
// console when it changes, and keeps the last results for /health.
type monitor struct {
	check    func() []result
	interval time.Duration
	out      io.Writer
	uptime   func() time.Duration // time since boot

	mu      sync.Mutex
	runs    int
	results []checkState
	printed string // the last report printed
	blessed bool   // markGood was tried
}

// checkState is a check's last result, as /health shows it.
type checkState struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
	// LastRun is when the check last ran, in seconds since boot.
	LastRun float64 `json:"last_run_s"`
}

func newMonitor(c checker, interval time.Duration, out io.Writer) *monitor {
	return &monitor{check: c.check, interval: interval, out: out, uptime: bootUptime}
}

// loop runs the checks now and then every interval (counted from the end
// of a run: runs never overlap) until ctx ends.
func (m *monitor) loop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.runOnce()
		t.Reset(m.interval)
	}
}

// maxProblem bounds a problem as /health shows it.
const maxProblem = 1024

// runOnce runs the checks, records them, and prints the report if it
// differs from the last one printed.
func (m *monitor) runOnce() {
	results := m.check()
	at := m.uptime().Seconds()
	states := make([]checkState, len(results))
	for i, r := range results {
		p := r.problem
		if len(p) > maxProblem {
			p = p[:maxProblem] + "…"
		}
		states[i] = checkState{Name: r.name, OK: r.problem == "", Problem: p, LastRun: at}
	}
	rep := report(results)
	m.mu.Lock()
	m.runs++
	m.results = states
	changed := rep != m.printed
	m.printed = rep
	bless := !m.blessed && len(problems(results)) == 0
	m.blessed = m.blessed || bless
	m.mu.Unlock()
	if changed {
		fmt.Fprint(m.out, rep)
	}
	// Booted from a heph disk: the loader entry is good now (bless.go),
	// once, after the first run that passed.
	if bless {
		if err := markGood(m.out); err != nil {
			fmt.Fprintf(m.out, "heph-boot: marking the boot entry good: %v\n", err)
		}
	}
}

// health is what GET /health answers.
type health struct {
	// Status is "ok" when every check passed, "failing" when one did not,
	// "starting" before the first run ends.
	Status   string       `json:"status"`
	Uptime   float64      `json:"uptime_s"`   // seconds since boot, now
	Interval float64      `json:"interval_s"` // between runs
	Runs     int          `json:"runs"`
	Failing  []string     `json:"failing"` // the failing checks' names
	Checks   []checkState `json:"checks"`
}

func (m *monitor) health() (health, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := health{Status: "ok", Uptime: m.uptime().Seconds(), Interval: m.interval.Seconds(), Runs: m.runs, Failing: []string{}, Checks: m.results}
	if m.runs == 0 {
		h.Status, h.Checks = "starting", []checkState{}
	}
	for _, c := range m.results {
		if !c.OK {
			h.Failing = append(h.Failing, c.Name)
		}
	}
	if len(h.Failing) > 0 {
		h.Status = "failing"
	}
	if h.Status != "ok" {
		return h, http.StatusServiceUnavailable
	}
	return h, http.StatusOK
}

// ServeHTTP answers GET (and HEAD) /health, and nothing else: the
// endpoint only reads.
func (m *monitor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/health" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "only GET", http.StatusMethodNotAllowed)
		return
	}
	h, code := m.health()
	b, _ := json.MarshalIndent(h, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		w.Write(append(b, '\n'))
	}
}

// serve listens on addr and serves /health in the background; requests
// are small (no body, headers bounded) and slow clients are cut off.
func (m *monitor) serve(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-health: %w", err)
	}
	fmt.Fprintf(m.out, "selftest: serving GET /health on %s\n", l.Addr())
	srv := &http.Server{
		Handler:           http.MaxBytesHandler(m, 0),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	go srv.Serve(l)
	return nil
}

var started = time.Now()

// bootUptime is the time since boot (/proc/uptime), or since the
// self-test started where that cannot be read.
func bootUptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if s, err := strconv.ParseFloat(f[0], 64); err == nil {
				return time.Duration(s * float64(time.Second))
			}
		}
	}
	return time.Since(started)
}
