package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hephc.dev/hephc/imagetest"
)

// TestConsoleShell boots the example system's server as a person does,
// with `hephc boot` on a terminal (a pseudo-terminal here): its image
// (consoleShell: false) says it has no console shell, and says so again
// for a line typed there; Ctrl-A X quits QEMU. (The workstation's shell,
// where age-keygen makes a key, is its image test's: TestTestSystem.)
func TestConsoleShell(t *testing.T) {
	storeDir, _, _ := systemStore(t)
	requireQEMU(t)
	server := imageToplevel(t, storeDir, "images.server")

	con := bootOnTerminal(t, server)
	con.expect(t, regexp.QuoteMeta(noConsoleShell), 4*time.Minute)
	con.send(t, "ls /bin\r")
	con.expect(t, regexp.QuoteMeta(noConsoleShell), time.Minute)
	con.quit(t)
}

// noConsoleShell is what an image without a console shell says there
// (system/hephinit/console.go).
const noConsoleShell = "heph: this image has no console shell (consoleShell: false)"

// imageToplevel returns the physical path of the example system's
// toplevel at attr in the store dir.
func imageToplevel(t *testing.T, storeDir, attr string) string {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: os.Getenv, store: storeDir}
	g, _, err := evaluate(e, evaluation{args: []string{"system.cue"}, policy: true, useCache: true})
	if err != nil {
		t.Fatal(err)
	}
	h, ok := g.Roots[attr]
	if !ok {
		t.Fatalf("system.cue has no root %s", attr)
	}
	return filepath.Join(storeDir, "store", g.Nodes[h].Path().Base())
}

// terminal is `hephc boot` running on a pseudo-terminal: what it shows
// (escape sequences removed) and how far the test has read.
type terminal struct {
	cmd    *exec.Cmd
	master *os.File
	exited chan error

	mu    sync.Mutex
	shown []byte // everything shown, escape sequences and all
	read  int    // how much of the plain text expect has consumed
	more  chan struct{}
}

// bootOnTerminal runs `hephc boot toplevel` (this test binary is hephc
// when called so) in a session of its own whose controlling terminal is
// a new pseudo-terminal, 80x24, as a shell would; flags are boot's.
func bootOnTerminal(t *testing.T, toplevel string, flags ...string) *terminal {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: self, Args: append(append([]string{"hephc", "boot"}, flags...), toplevel), Dir: t.TempDir()}
	cmd.Env = append(os.Environ(), "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term := &terminal{cmd: cmd, master: master, exited: make(chan error, 1), more: make(chan struct{}, 1)}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // hephc stops QEMU
		select {
		case <-term.exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	go func() { term.exited <- cmd.Wait() }()
	go term.copy()
	return term
}

// copy keeps what the terminal shows, until it can be read no more.
func (c *terminal) copy() {
	buf := make([]byte, 4096)
	for {
		n, err := c.master.Read(buf)
		c.mu.Lock()
		c.shown = append(c.shown, buf[:n]...)
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

func (c *terminal) plain() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return imagetest.Plain(string(c.shown))
}

// expect waits for the plain text after what was read so far to match
// pattern, and reads up to the end of the match.
func (c *terminal) expect(t *testing.T, pattern string, timeout time.Duration) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.After(timeout)
	for {
		text := c.plain()
		if loc := re.FindStringIndex(text[c.read:]); loc != nil {
			c.read += loc[1]
			return
		}
		select {
		case <-c.more:
		case err := <-c.exited:
			c.exited <- err
			t.Fatalf("hephc boot exited (%v) before the console showed %q\n%s", err, pattern, c.tail())
		case <-deadline:
			t.Fatalf("after %v the console has not shown %q\n%s", timeout, pattern, c.tail())
		}
	}
}

// tail is the end of the console, for failures.
func (c *terminal) tail() string {
	text := c.plain()
	if len(text) > 3000 {
		text = "…" + text[len(text)-3000:]
	}
	return text
}

// send types s on the terminal.
func (c *terminal) send(t *testing.T, s string) {
	t.Helper()
	if _, err := c.master.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// quit types Ctrl-A X, QEMU's key to quit, and waits for hephc boot to
// exit 0.
func (c *terminal) quit(t *testing.T) {
	t.Helper()
	c.send(t, "\x01x")
	select {
	case err := <-c.exited:
		c.exited <- err
		if err != nil {
			t.Fatalf("hephc boot after Ctrl-A X: %v\n%s", err, c.tail())
		}
	case <-time.After(time.Minute):
		t.Fatalf("hephc boot still runs a minute after Ctrl-A X\n%s", c.tail())
	}
}
