package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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

// A service's output reaches the console a line at a time (see
// copyLines). maxLine is the longest line written whole; drainWait is how
// long the supervisor waits, once a service has exited, for the rest of
// its output before it says so (a process the service left behind may
// hold the pipe open for ever; its lines go on being copied).
const (
	maxLine   = 4096
	drainWait = time.Second
)

// supervisor starts services and restarts them as their policies say.
type supervisor struct {
	// console takes the services' output and the supervisor's messages.
	console io.Writer
	// minBackoff, maxBackoff override the package's delays (tests).
	minBackoff, maxBackoff time.Duration

	mu sync.Mutex // serializes writes to the console
}

func (s *supervisor) logf(format string, args ...any) {
	s.write(fmt.Appendf(nil, "heph: "+format+"\n", args...))
}

// write writes b to the console in one call, after any other write.
func (s *supervisor) write(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.console.Write(b)
}

// copyLines copies a service's output to the console until r ends, each
// line (up to maxLine bytes; a longer one goes in pieces) in one write,
// so that the lines of services running together, and the supervisor's
// messages, never break into one another. (The services used to write to
// the console themselves: a program that writes a line in pieces, as
// text/tabwriter does, had another service's line land in the middle of
// it.) A last line without a newline goes when r ends, with one.
func (s *supervisor) copyLines(r io.Reader) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if err == io.EOF && len(line) > 0 {
			line = append(line, '\n')
		}
		if len(line) > 0 {
			s.write(line)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// start starts cmd with its stdout and stderr one pipe whose lines
// copyLines writes to the console; copied is closed when the pipe ends.
func (s *supervisor) start(cmd *exec.Cmd) (copied chan struct{}, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	copied = make(chan struct{})
	go func() {
		defer close(copied)
		defer r.Close()
		s.copyLines(r)
	}()
	return copied, err
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
		t0 := time.Now()
		copied, err := s.start(cmd)
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
		// Its last lines before the line that says it exited.
		select {
		case <-copied:
		case <-time.After(drainWait):
		}
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
