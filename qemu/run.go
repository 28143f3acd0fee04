package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ConsoleTail is how many console lines a failed Expect shows.
const ConsoleTail = 25

var errTimedOut = errors.New("timed out")

// RunOptions say how Run watches QEMU.
type RunOptions struct {
	// Stdin is the guest's console input when Expect is empty (a
	// terminal: QEMU puts it in raw mode and restores it).
	Stdin          io.Reader
	Stdout, Stderr io.Writer // the console and QEMU's own messages
	// Expect, when set, ends the run successfully as soon as a console
	// line contains it, and with an error showing the console's last
	// lines when QEMU stops or time runs out first.
	Expect  string
	Timeout time.Duration // 0: none
}

// Run runs QEMU (exe) with args until it exits, the timeout passes, a
// signal (SIGINT, SIGTERM) comes, or a console line contains o.Expect.
// QEMU never outlives it, nor the calling process.
func Run(ctx context.Context, exe string, args []string, o RunOptions) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if o.Timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, o.Timeout, errTimedOut)
		defer cancelTimeout()
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // if we die
	cmd.WaitDelay = 5 * time.Second
	cmd.Stderr = o.Stderr
	con := &watcher{out: o.Stdout, expect: o.Expect, found: func() { cancel(nil) }}
	if o.Expect == "" {
		cmd.Stdin, cmd.Stdout = o.Stdin, o.Stdout
		// SIGTERM lets QEMU restore the terminal; SIGKILL if it lingers.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	} else {
		// QEMU has no terminal to restore: kill it (by default), and
		// quietly.
		cmd.Stdout = con
	}
	err := cmd.Run()
	if f, ok := o.Stdout.(*os.File); ok {
		if fi, _ := f.Stat(); fi != nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(f, "\x1b[?7h") // SeaBIOS turned line wrapping off
		}
	}
	con.mu.Lock()
	defer con.mu.Unlock()
	if len(con.line) > 0 {
		con.endLine()
	}
	if con.matched {
		return nil
	}
	var stopped string
	switch {
	case errors.Is(context.Cause(ctx), errTimedOut):
		stopped = fmt.Sprintf("timed out after %v; QEMU stopped", o.Timeout)
	case ctx.Err() != nil:
		stopped = "interrupted; QEMU stopped"
	case o.Expect == "" && err != nil:
		return fmt.Errorf("qemu: %w", err)
	case o.Expect == "":
		return nil
	case err != nil:
		stopped = fmt.Sprintf("QEMU exited (%v)", err)
	default:
		stopped = "QEMU exited"
	}
	if o.Expect == "" {
		return errors.New(stopped)
	}
	return fmt.Errorf("%s before a console line contained %q\n%s", stopped, o.Expect, lastLines(con.tail))
}

// watcher copies QEMU's serial console to out and watches its lines for
// expect, keeping the last few to show when it does not come.
type watcher struct {
	mu      sync.Mutex // Wait may return before the last Write (WaitDelay)
	out     io.Writer
	expect  string
	found   func() // called once, when a line contains expect
	matched bool
	line    []byte   // the line being written
	tail    []string // the last ConsoleTail lines
}

func (c *watcher) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.matched {
		return len(p), nil // what comes after is QEMU being stopped
	}
	shown := p
	for i, b := range p {
		if b != '\n' && len(c.line) < 1<<16 {
			c.line = append(c.line, b)
			continue
		}
		if c.endLine(); c.matched {
			shown = p[:i+1]
			break
		}
	}
	c.out.Write(shown) // a closed stdout must not stop the console
	return len(p), nil
}

func (c *watcher) endLine() {
	l := strings.TrimRight(string(c.line), "\r")
	c.line = c.line[:0]
	if c.tail = append(c.tail, l); len(c.tail) > ConsoleTail {
		c.tail = c.tail[1:]
	}
	if !c.matched && strings.Contains(l, c.expect) {
		c.matched = true
		c.found()
	}
}

// lastLines shows the end of a console.
func lastLines(tail []string) string {
	if len(tail) == 0 {
		return "the console showed nothing (does the cmdline say console=ttyS0?)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "last %d console lines:", len(tail))
	for _, l := range tail {
		b.WriteString("\n  | " + l)
	}
	return b.String()
}
