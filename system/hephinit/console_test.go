package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

func TestConsoleDeviceIsTheLastActiveConsole(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ active, want string }{
		{"ttyS0\n", "/dev/ttyS0"},
		{"tty0 ttyS0\n", "/dev/ttyS0"},
		{"ttyS0 hvc0\n", "/dev/hvc0"},
		{"\n", "/dev/console"},
		{"../x\n", "/dev/console"},
	} {
		file := filepath.Join(dir, "active")
		os.WriteFile(file, []byte(c.active), 0o644)
		if got := consoleDevice(file); got != c.want {
			t.Errorf("active %q: got %s, want %s", c.active, got, c.want)
		}
	}
	if got := consoleDevice(filepath.Join(dir, "missing")); got != "/dev/console" {
		t.Errorf("no active file: got %s, want /dev/console", got)
	}
}

// rw is a console: what is typed, and what is shown.
type rw struct {
	io.Reader
	io.Writer
}

func TestNoShellAnswersEveryLine(t *testing.T) {
	var shown bytes.Buffer
	refuse(rw{strings.NewReader("ls /bin\nage-keygen\n"), &shown}, noShellMessage)
	want := strings.Repeat(noShellMessage+"\n", 3)
	if shown.String() != want {
		t.Errorf("the console showed %q, want %q", shown.String(), want)
	}
}

// ttyReport says what a console shell sees: whether standard input is a
// terminal, whether it leads its session, and whether that terminal is
// its session's controlling terminal.
func ttyReport(w io.Writer) {
	sid, _, _ := syscall.RawSyscall(syscall.SYS_GETSID, 0, 0, 0)
	var ttySid int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGSID, uintptr(unsafe.Pointer(&ttySid)))
	fmt.Fprintf(w, "terminal=%v leader=%v ctty=%v\n", isTerminal(0), int(sid) == os.Getpid(), errno == 0 && int(ttySid) == os.Getpid())
}

func isTerminal(fd uintptr) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

// openPTY opens a pseudo-terminal: its master and the path of its slave.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var n uint32
	var unlock int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); errno != 0 {
		t.Skipf("no pseudo-terminals: %v", errno)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		t.Fatal(errno)
	}
	slave := fmt.Sprintf("/dev/pts/%d", n)
	if _, err := os.Stat(slave); err != nil {
		t.Skipf("no pseudo-terminals (a sandbox without /dev/pts?): %v", err)
	}
	return m, slave
}

// The console shell runs on the console device as its controlling
// terminal, leading a session of its own, and its end is told.
func TestConsoleShellOwnsTheTerminal(t *testing.T) {
	master, slave := openPTY(t)
	t.Setenv("HEPHINIT_TEST_SERVICE", "tty")
	master.SetReadDeadline(time.Now().Add(time.Minute))
	shown := make(chan string)
	go func() {
		b, _ := io.ReadAll(master) // EIO once the shell has closed the slave
		shown <- string(b)
	}()
	_, err := runShell(slave, self(t))
	if got := shellExit(err); got != "exited with status 3" {
		t.Errorf("the shell %s, want exited with status 3", got)
	}
	if out := <-shown; !strings.Contains(out, "terminal=true leader=true ctty=true") {
		t.Errorf("the shell saw %q, want its terminal as controlling terminal, leading its session", out)
	}
	if _, err := runShell(filepath.Join(t.TempDir(), "no-tty"), self(t)); !strings.Contains(shellExit(err), "could not start") {
		t.Errorf("a missing console: %s", shellExit(err))
	}
}
