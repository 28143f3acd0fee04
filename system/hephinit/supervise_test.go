package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/system/hephinit/internal/image"
)

// The test binary doubles as a service: HEPHINIT_TEST_SERVICE=exit:N
// prints a line and exits with status N; count:FILE:N appends a line to
// FILE and fails until FILE has N lines; tty (a console shell) says
// whether its standard input is its controlling terminal and it leads
// its session, and exits with status 3; pieces (its argument TAG) writes
// 50 lines "TAG TAG TAG", a byte at a time, then "TAG end" without a
// newline to stderr.
func TestMain(m *testing.M) {
	if spec := os.Getenv("HEPHINIT_TEST_SERVICE"); spec != "" {
		os.Exit(service(spec))
	}
	os.Exit(m.Run())
}

func service(spec string) int {
	f := strings.Split(spec, ":")
	switch f[0] {
	case "exit":
		n, _ := strconv.Atoi(f[1])
		os.Stdout.WriteString("service ran\n")
		return n
	case "count":
		b, _ := os.ReadFile(f[1])
		b = append(b, "run\n"...)
		os.WriteFile(f[1], b, 0o644)
		want, _ := strconv.Atoi(f[2])
		if bytes.Count(b, []byte("\n")) < want {
			return 1
		}
		return 0
	case "tty":
		ttyReport(os.Stdout)
		return 3
	case "pieces":
		tag := os.Args[1]
		line := strings.Repeat(tag+" ", 2) + tag + "\n"
		for range 50 {
			for i := range len(line) {
				os.Stdout.WriteString(line[i : i+1])
				time.Sleep(20 * time.Microsecond)
			}
		}
		os.Stderr.WriteString(tag + " end")
		return 0
	}
	return 3
}

// syncBuffer is a bytes.Buffer safe for the writers of several processes'
// copying goroutines.
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

func self(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func supervise(t *testing.T, svcs map[string]image.Service, env string) string {
	t.Helper()
	t.Setenv("HEPHINIT_TEST_SERVICE", env)
	var out syncBuffer
	s := &supervisor{console: &out, minBackoff: time.Millisecond, maxBackoff: 4 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.run(ctx, svcs)
	if ctx.Err() != nil {
		t.Fatalf("the supervisor did not return:\n%s", out.String())
	}
	return out.String()
}

func TestMissingBinaryNamesTheService(t *testing.T) {
	out := supervise(t, map[string]image.Service{
		"sshd": {Command: "/nonexistent/sshd", Restart: image.RestartAlways},
	}, "exit:0")
	want := "heph: service sshd FAILED to start: its command /nonexistent/sshd is missing\n"
	if !strings.Contains(out, want) {
		t.Errorf("got\n%s\nwant a line %q", out, want)
	}
}

func TestRestartNever(t *testing.T) {
	out := supervise(t, map[string]image.Service{
		"once": {Command: self(t), Restart: image.RestartNever},
	}, "exit:1")
	if n := strings.Count(out, "service ran"); n != 1 {
		t.Errorf("ran %d times, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "heph: service once exited with status 1; not restarting it (restart: never)") {
		t.Errorf("no message about the failure:\n%s", out)
	}
}

func TestRestartOnFailureUntilSuccess(t *testing.T) {
	file := filepath.Join(t.TempDir(), "runs")
	out := supervise(t, map[string]image.Service{
		"flaky": {Command: self(t), Restart: image.RestartOnFailure},
	}, "count:"+file+":3")
	b, _ := os.ReadFile(file)
	if n := strings.Count(string(b), "run"); n != 3 {
		t.Errorf("ran %d times, want 3 (two failures, then success):\n%s", n, out)
	}
	if !strings.Contains(out, "heph: service flaky exited with status 0\n") {
		t.Errorf("no message about the success:\n%s", out)
	}
}

func TestRestartAlwaysRestartsSuccess(t *testing.T) {
	t.Setenv("HEPHINIT_TEST_SERVICE", "exit:0")
	var out syncBuffer
	s := &supervisor{console: &out, minBackoff: time.Millisecond, maxBackoff: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.run(ctx, map[string]image.Service{"loop": {Command: self(t), Restart: image.RestartAlways}})
		close(done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(out.String(), "service ran") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if n := strings.Count(out.String(), "service ran"); n < 3 {
		t.Errorf("ran %d times, want it restarted again and again:\n%s", n, out.String())
	}
}

// Two services writing their lines a byte at a time, side by side, reach
// the console as whole lines, each service's last one (no newline) before
// the line that says it exited.
func TestServiceLinesNeverMix(t *testing.T) {
	t.Setenv("HEPHINIT_TEST_SERVICE", "pieces")
	var out syncBuffer
	s := &supervisor{console: &out}
	svcs := map[string]image.Service{}
	for _, tag := range []string{"aaaa", "bbbb"} {
		svcs[tag] = image.Service{Command: self(t), Args: []string{tag}, Restart: image.RestartNever}
	}
	s.run(context.Background(), svcs)
	got := out.String()
	n := map[string]int{}
	for _, line := range strings.SplitAfter(got, "\n") {
		switch {
		case line == "aaaa aaaa aaaa\n", line == "bbbb bbbb bbbb\n":
			n[line[:4]]++
		case line == "", strings.HasPrefix(line, "heph: starting service "),
			line == "aaaa end\n", line == "bbbb end\n",
			line == "heph: service aaaa exited with status 0\n",
			line == "heph: service bbbb exited with status 0\n":
		default:
			t.Errorf("a line broken into: %q", line)
		}
	}
	if n["aaaa"] != 50 || n["bbbb"] != 50 {
		t.Errorf("whole lines: %v, want 50 of each:\n%s", n, got)
	}
	for _, tag := range []string{"aaaa", "bbbb"} {
		if end, exit := strings.Index(got, tag+" end\n"), strings.Index(got, "heph: service "+tag+" exited"); end < 0 || exit < end {
			t.Errorf("%s: its last line is not before the line that says it exited:\n%s", tag, got)
		}
	}
}

func TestServicesStartInNameOrder(t *testing.T) {
	out := supervise(t, map[string]image.Service{
		"b": {Command: "/nonexistent/b", Restart: image.RestartNever},
		"a": {Command: "/nonexistent/a", Restart: image.RestartNever},
		"c": {Command: "/nonexistent/c", Restart: image.RestartNever},
	}, "exit:0")
	ia, ib, ic := strings.Index(out, "service a:"), strings.Index(out, "service b:"), strings.Index(out, "service c:")
	if !(ia >= 0 && ia < ib && ib < ic) {
		t.Errorf("want a, b, c started in that order:\n%s", out)
	}
}

func TestRunRejectsABadServicesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "services.json")
	os.WriteFile(file, []byte(`{"x": {"command": "/bin/x", "restart": "sometimes"}}`), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-foreground", "-services", file}, &stdout, &stderr); code != 1 {
		t.Errorf("got exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), `unknown restart policy "sometimes"`) {
		t.Errorf("got %q, want the bad policy named", stderr.String())
	}
}
