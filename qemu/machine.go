package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartOptions say where a started machine's output goes.
type StartOptions struct {
	// Transcript, when set, gets a copy of everything the console prints.
	Transcript io.Writer
	// Stderr gets QEMU's own messages (default: kept, and shown in Wait's
	// error).
	Stderr io.Writer
}

// Machine is a running QEMU whose serial console a program drives.
type Machine struct {
	cmd    *exec.Cmd
	con    *Console
	stderr bytes.Buffer
	done   chan struct{} // closed when QEMU has exited
	err    error         // Wait's, once done
}

// Start starts QEMU (exe) with args, its serial console on pipes. It
// stops when ctx ends or Kill is called, and never outlives the calling
// process.
func Start(ctx context.Context, exe string, args []string, o StartOptions) (*Machine, error) {
	path, err := exec.LookPath(exe)
	if err != nil {
		return nil, fmt.Errorf("%s not found: %s", exe, Hint)
	}
	m := &Machine{done: make(chan struct{})}
	m.cmd = exec.CommandContext(ctx, path, args...)
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m.cmd.WaitDelay = 5 * time.Second
	m.cmd.Stderr = &m.stderr
	if o.Stderr != nil {
		m.cmd.Stderr = o.Stderr
	}
	in, err := m.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", exe, err)
	}
	m.con = newConsole(in, o.Transcript)
	go func() {
		m.con.fill(out)
		m.err = m.cmd.Wait()
		if m.err != nil && m.stderr.Len() > 0 {
			m.err = fmt.Errorf("%w: %s", m.err, strings.TrimSpace(m.stderr.String()))
		}
		close(m.done)
	}()
	return m, nil
}

// Console is the guest's serial console.
func (m *Machine) Console() *Console { return m.con }

// Kill stops QEMU (SIGKILL) and waits for it.
func (m *Machine) Kill() {
	m.cmd.Process.Kill()
	<-m.done
}

// Wait waits for QEMU to exit and returns how it did.
func (m *Machine) Wait() error {
	<-m.done
	return m.err
}

// maxBuffered bounds what the console keeps unread: past it, the oldest
// bytes are dropped.
const maxBuffered = 4 << 20

// Console reads what the guest prints on its serial console and types
// into it. Reads wait for output; ReadLine and Expect give up when their
// context ends or the machine stops. It is safe for one reader and one
// writer at once.
type Console struct {
	in         io.WriteCloser
	transcript io.Writer

	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte // printed, not yet read
	closed bool   // QEMU's output ended
}

func newConsole(in io.WriteCloser, transcript io.Writer) *Console {
	c := &Console{in: in, transcript: transcript}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// fill reads QEMU's output until it ends.
func (c *Console) fill(out io.Reader) {
	b := make([]byte, 32<<10)
	for {
		n, err := out.Read(b)
		if n > 0 {
			if c.transcript != nil {
				c.transcript.Write(b[:n])
			}
			c.mu.Lock()
			c.buf = append(c.buf, b[:n]...)
			if len(c.buf) > maxBuffered {
				c.buf = c.buf[len(c.buf)-maxBuffered:]
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		}
		if err != nil {
			c.mu.Lock()
			c.closed = true
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
	}
}

// ErrStopped is what reads return once the machine stopped and all it
// printed was read.
var ErrStopped = errors.New("the machine stopped")

// take waits, under c.mu, until n(buf) (how many buffered bytes to
// consume, or -1 for not yet) is found, ctx ends or the console closes.
func (c *Console) take(ctx context.Context, n func([]byte) int) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if k := n(c.buf); k >= 0 {
			got := bytes.Clone(c.buf[:k])
			c.buf = c.buf[k:]
			return got, nil
		}
		if c.closed {
			return nil, ErrStopped
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c.cond.Wait()
	}
}

// Read reads what the console printed, waiting for something.
func (c *Console) Read(p []byte) (int, error) {
	got, err := c.take(context.Background(), func(b []byte) int {
		if len(b) == 0 {
			return -1
		}
		return min(len(b), len(p))
	})
	if errors.Is(err, ErrStopped) {
		err = io.EOF
	}
	return copy(p, got), err
}

// ReadLine reads the next line the console prints, without its line end.
func (c *Console) ReadLine(ctx context.Context) (string, error) {
	got, err := c.take(ctx, func(b []byte) int {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return i + 1
		}
		return -1
	})
	return strings.TrimRight(string(got), "\r\n"), err
}

// Expect reads the console until what it prints contains s (a prompt
// need not end its line) and returns the line holding it, up to s's end.
// It fails when ctx ends or the machine stops first, with the last lines
// read.
func (c *Console) Expect(ctx context.Context, s string) (string, error) {
	var tail []string
	for {
		got, err := c.take(ctx, func(b []byte) int {
			nl := bytes.IndexByte(b, '\n')
			line := b
			if nl >= 0 {
				line = b[:nl]
			}
			if i := bytes.Index(line, []byte(s)); i >= 0 {
				return i + len(s)
			}
			if nl >= 0 {
				return nl + 1
			}
			return -1
		})
		if err != nil {
			return "", fmt.Errorf("%w before the console printed %q\n%s", err, s, lastLines(tail))
		}
		l := strings.TrimRight(string(got), "\r\n")
		if strings.Contains(l, s) {
			return l, nil
		}
		if tail = append(tail, l); len(tail) > ConsoleTail {
			tail = tail[1:]
		}
	}
}

// Write types p into the guest's console.
func (c *Console) Write(p []byte) (int, error) { return c.in.Write(p) }

// WriteLine types line and a line end into the guest ("\n": a guest
// terminal reads it as Enter, as it reads "\r").
func (c *Console) WriteLine(line string) error {
	_, err := io.WriteString(c.in, line+"\n")
	return err
}
