package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a console the monitor prints on while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func getHealth(t *testing.T, m *monitor, method, path string) (int, health, string) {
	t.Helper()
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	var h health
	if w.Code == 200 || w.Code == 503 {
		if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil && method == "GET" {
			t.Fatalf("%s %s: %v\n%s", method, path, err, w.Body)
		}
	}
	return w.Code, h, w.Body.String()
}

// waitHealth polls /health until it answers code with the failing checks
// failing, after at least one more run.
func waitHealth(t *testing.T, m *monitor, code int, failing []string) health {
	t.Helper()
	_, h0, _ := getHealth(t, m, "GET", "/health")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, h, body := getHealth(t, m, "GET", "/health")
		if c == code && h.Runs > h0.Runs && slices.Equal(h.Failing, failing) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health answers %d\n%s\nwant %d, failing %q", c, body, code, failing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMonitor: the checks run periodically; /health turns from ok (200)
// to failing (503, the broken program's check named) and back as a
// program of the image is removed and put back, and the console shows
// each change once, however many runs there were.
func TestMonitor(t *testing.T) {
	exe, _ := os.Executable()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(t.TempDir(), "age")
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	p, s := writeImage(t, []string{exe, prog}, map[string]string{"selftest": exe})
	var out syncBuffer
	m := newMonitor(checker{programs: p, services: s}, 20*time.Millisecond, &out)
	if code, h, _ := getHealth(t, m, "GET", "/health"); code != 503 || h.Status != "starting" {
		t.Errorf("before the first run: %d %+v, want 503 starting", code, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.loop(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	h := waitHealth(t, m, 200, []string{})
	if h.Status != "ok" || h.Interval != 0.02 || len(h.Checks) != 3 || h.Checks[1].Name != "program "+prog || !h.Checks[1].OK || h.Checks[1].LastRun <= 0 {
		t.Errorf("ok: %+v", h)
	}
	os.Rename(prog, prog+".away")
	h = waitHealth(t, m, 503, []string{"program " + prog})
	if h.Status != "failing" || h.Checks[1].OK || h.Checks[1].Problem != "program "+prog+" of package pkg: "+prog+" is missing" {
		t.Errorf("failing: %+v", h)
	}
	os.Rename(prog+".away", prog)
	h = waitHealth(t, m, 200, []string{})
	for runs := h.Runs; h.Runs < runs+3; time.Sleep(10 * time.Millisecond) {
		_, h, _ = getHealth(t, m, "GET", "/health")
	}
	cancel()
	<-done
	want := "HEPH-SELFTEST OK\nHEPH-SELFTEST FAIL: program " + prog + " of package pkg: " + prog + " is missing\nHEPH-SELFTEST OK\n"
	if out.String() != want || h.Runs < 6 {
		t.Errorf("after %d runs the console shows\n%s\nwant\n%s", h.Runs, out.String(), want)
	}
}

// TestHealthEndpoint: GET and HEAD /health only; everything else is
// refused, and the real server answers over TCP.
func TestHealthEndpoint(t *testing.T) {
	exe, _ := os.Executable()
	p, s := writeImage(t, []string{exe}, nil)
	var out syncBuffer
	m := newMonitor(checker{programs: p, services: s}, time.Hour, &out)
	m.runOnce()
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/health", 200}, {"HEAD", "/health", 200},
		{"POST", "/health", 405}, {"DELETE", "/health", 405},
		{"GET", "/", 404}, {"GET", "/health/../etc/passwd", 404}, {"GET", "/healthz", 404},
	} {
		if code, _, body := getHealth(t, m, tc.method, tc.path); code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.code)
		}
	}
	if err := m.serve("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(strings.Split(out.String(), "\n")[1], "selftest: serving GET /health on "))
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var h health
	if err := json.Unmarshal(body, &h); err != nil || resp.StatusCode != 200 || h.Status != "ok" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET http://%s/health: %d %v\n%s", addr, resp.StatusCode, err, body)
	}
	if err := m.serve(addr); err == nil || !strings.Contains(err.Error(), "-health:") {
		t.Errorf("a port in use: %v", err)
	}
}

func TestMonitorUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-interval", "10ms"},
		{"-health", ":9100"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage") {
			t.Errorf("selftest %q: exit %d, %s", args, code, stderr.String())
		}
	}
}
