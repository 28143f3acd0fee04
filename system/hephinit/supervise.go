package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"strings"
	"sync"
	"time"

	"hephc.dev/hephc/system/hephinit/internal/image"
)

// Restart delays: the first restart waits minBackoff, each quick failure
// after it twice as long, up to maxBackoff. A service that ran for
// stableAfter starts from minBackoff again.
const (
	minBackoff  = time.Second
	maxBackoff  = 30 * time.Second
	stableAfter = 10 * time.Second
)

// supervisor starts services and restarts them as their policies say.
type supervisor struct {
	// stdout and stderr are the services' output and the supervisor's
	// messages (the console).
	stdout, stderr io.Writer
	// minBackoff, maxBackoff override the package's delays (tests).
	minBackoff, maxBackoff time.Duration

	mu sync.Mutex // serializes messages
}

func (s *supervisor) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.stderr, "heph: "+format+"\n", args...)
}

// run starts every service, in the order of their names, and returns when
// none will run again or ctx is done.
func (s *supervisor) run(ctx context.Context, svcs map[string]image.Service) {
	var wg sync.WaitGroup
	for _, name := range image.Names(svcs) {
		svc := svcs[name]
		s.logf("starting service %s: %s", name, strings.Join(append([]string{svc.Command}, svc.Args...), " "))
		started := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.supervise(ctx, name, svc, started)
		}()
		<-started // start them in order
	}
	wg.Wait()
}

// supervise runs one service until its policy says to stop; started is
// closed once the first start has been tried.
func (s *supervisor) supervise(ctx context.Context, name string, svc image.Service, started chan struct{}) {
	minB, maxB := minBackoff, maxBackoff
	if s.minBackoff > 0 {
		minB, maxB = s.minBackoff, s.maxBackoff
	}
	backoff := minB
	once := sync.OnceFunc(func() { close(started) })
	defer once()
	for runs := 1; ; runs++ {
		cmd := exec.Command(svc.Command, svc.Args...)
		cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
		t0 := time.Now()
		err := cmd.Start()
		once()
		if err != nil {
			// A missing or unusable binary does not come back: say so
			// and give up on the service.
			why := err.Error()
			if errors.Is(err, fs.ErrNotExist) {
				why = "its command " + svc.Command + " is missing"
			}
			s.logf("service %s FAILED to start: %s", name, why)
			return
		}
		err = cmd.Wait()
		status := "exited with status 0"
		failed := false
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status, failed = describeExit(ee), true
		} else if err != nil {
			status, failed = err.Error(), true
		}
		again := svc.Restart == image.RestartAlways || (svc.Restart == image.RestartOnFailure && failed)
		if !again {
			if failed {
				s.logf("service %s %s; not restarting it (restart: %s)", name, status, svc.Restart)
			} else {
				s.logf("service %s %s", name, status)
			}
			return
		}
		if time.Since(t0) >= stableAfter {
			backoff = minB
		}
		s.logf("service %s %s; restarting it in %v (restart: %s, run %d)", name, status, backoff, svc.Restart, runs)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxB)
	}
}

func describeExit(ee *exec.ExitError) string {
	if ws, ok := ee.Sys().(interface{ Signaled() bool }); ok && ws.Signaled() {
		return "was killed: " + ee.String()
	}
	return fmt.Sprintf("exited with status %d", ee.ExitCode())
}
