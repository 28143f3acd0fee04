package imagetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Console is a serial console being read: the lines it printed so far.
// Lines are split at "\n", with "\r" and terminal escape sequences
// removed.
type Console struct {
	mu     sync.Mutex
	lines  []string
	closed error // why no more lines come (io.EOF when the guest stopped)
	more   chan struct{}
	ended  chan struct{} // closed when the console is read no more
	in     io.Writer
	record io.Writer
}

// NewConsole reads the console from out until it ends, and types on in.
// Every byte read is copied to record, when not nil (the transcript).
func NewConsole(out io.Reader, in io.Writer, record io.Writer) *Console {
	c := &Console{more: make(chan struct{}, 1), ended: make(chan struct{}), in: in, record: record}
	go c.read(out)
	return c
}

// escapes are terminal control sequences (CSI and OSC) a console carries.
var escapes = regexp.MustCompile("\x1b\\[[0-9;?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(\x07|\x1b\\\\)|\r")

// Plain returns s, a console's output, without the terminal's control
// sequences (CSI and OSC) and carriage returns around its text.
func Plain(s string) string { return escapes.ReplaceAllString(s, "") }

func (c *Console) read(out io.Reader) {
	defer close(c.ended)
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if c.record != nil && line != "" {
			c.record.Write([]byte(line))
		}
		c.mu.Lock()
		if line != "" {
			c.lines = append(c.lines, Plain(strings.TrimSuffix(line, "\n")))
		}
		if err != nil {
			c.closed = err
		}
		c.mu.Unlock()
		select {
		case c.more <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// StepError is a step that failed: its index, the step, and why.
type StepError struct {
	Index int
	Step  Step
	Err   error
}

// Error names the step by its number (its position is the caller's to
// show, relative to where the user is).
func (e *StepError) Error() string {
	return fmt.Sprintf("step %d, %s: %v", e.Index+1, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// ErrTimedOut is a step whose line did not come within its timeout.
var ErrTimedOut = errors.New("timed out")

// ErrStopped is a step whose line did not come before the guest stopped.
var ErrStopped = errors.New("the guest stopped (its console ended) before such a line")

// Run runs the steps in order. A wait matches any line since the start
// or since the last line sent (lines of services that start at once come
// in any order); an expect matches a line after its send. It returns the
// steps that passed and the first that failed (a *StepError).
func (c *Console) Run(ctx context.Context, steps []Step) (passed []string, err error) {
	from := 0 // the first line a wait may match
	for i, s := range steps {
		if s.Send != nil {
			c.mu.Lock()
			from = len(c.lines)
			c.mu.Unlock()
			if _, err := io.WriteString(c.in, *s.Send+"\r"); err != nil {
				return passed, &StepError{i, s, fmt.Errorf("typing on the console: %w", err)}
			}
		}
		pattern := s.Wait
		if s.Send != nil {
			pattern = s.Expect
		}
		if pattern != "" {
			if err := c.await(ctx, regexp.MustCompile(pattern), from, s.Timeout); err != nil {
				return passed, &StepError{i, s, err}
			}
		}
		passed = append(passed, fmt.Sprintf("%d: %s", i+1, s))
	}
	return passed, nil
}

// await waits up to timeout for a line from the index from on that
// matches re.
func (c *Console) await(ctx context.Context, re *regexp.Regexp, from int, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		lines, closed := c.lines, c.closed
		c.mu.Unlock()
		for i := from; i < len(lines); i++ {
			if re.MatchString(lines[i]) {
				return nil
			}
		}
		if len(lines) > from {
			from = len(lines)
		}
		if closed != nil {
			if closed == io.EOF {
				return ErrStopped
			}
			return fmt.Errorf("reading the console: %w", closed)
		}
		select {
		case <-c.more:
		case <-timer.C:
			return fmt.Errorf("%w after %v: no such line", ErrTimedOut, timeout)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Tail returns the console's last n lines.
func (c *Console) Tail(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lines) > n {
		return append([]string(nil), c.lines[len(c.lines)-n:]...)
	}
	return append([]string(nil), c.lines...)
}
