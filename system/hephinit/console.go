package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"hephc.dev/hephc/system/hephinit/internal/image"
)

// The console. u-root's init (v0.16.0) runs its uinit, waits for it,
// then runs /bin/defaultsh and /bin/sh (both gosh) the same way, each in
// a session of its own with the console as controlling terminal, its
// output through a pipe that init copies to the consoles of the kernel
// command line (ttyS0), opened for every command before the first runs.
// When the uinit, a session leader whose controlling terminal is the
// serial line, exits, the kernel hangs that terminal up (it does so for
// every terminal but a pseudo-terminal): init's open ttyS0 files fail,
// its copying ends, and each shell dies of SIGPIPE at its first prompt.
// init then says "Waiting for orphaned children" and nothing more. (Files
// opened as /dev/console are not hung up: the services' output goes on.)
//
// So hephinit never returns to init: it keeps the console itself, as a
// getty would. With the image's consoleShell on it runs u-root's shell
// (gosh, built with the goshsmall tag: a "$ " prompt, lines the terminal
// edits; its own line editor floods a serial console with escape
// sequences and now and then hangs as it returns the terminal) on
// the console's own device (the one /dev/console writes to, as busybox's
// cttyhack finds it), opened afresh for each shell, which becomes the
// shell's controlling terminal; another starts when it exits. Off, it
// answers every line typed there with noShellMessage.

const (
	// consoleShellProgram is the shell: u-root's /bin/sh (gosh), there
	// in every u-root command set heph builds ("core", "minimal").
	consoleShellProgram = "/bin/sh"
	// activeConsoles lists the console devices, the one /dev/console
	// writes to last.
	activeConsoles = "/sys/class/tty/console/active"
	noShellMessage = "heph: this image has no console shell (consoleShell: false)"
)

// Restart delays of the console shell: one that exits within
// shellQuickExit is started again after a delay from minBackoff doubling
// up to maxBackoff (a shell that cannot start does not spin).
const shellQuickExit = 2 * time.Second

// keepConsole keeps the console as the image's console file says,
// writing its messages to msg (/dev/console), and never returns.
func keepConsole(file string, msg io.Writer) {
	// Keyboard signals on the console must not end hephinit: init would
	// then run its own shell. (Caught, not ignored: ignoring is inherited
	// by the shell.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGHUP, syscall.SIGTERM)
	dev := consoleDevice(activeConsoles)
	cfg, err := image.ReadConsole(file)
	if err != nil || !cfg.Shell {
		why := noShellMessage
		if err != nil {
			why = fmt.Sprintf("heph: no console shell: %v", err)
		}
		if tty, err := os.OpenFile(dev, os.O_RDWR|syscall.O_NOCTTY, 0); err == nil {
			refuse(tty, why)
		} else {
			fmt.Fprintln(msg, why)
		}
		select {}
	}
	var delay time.Duration
	for {
		fmt.Fprintf(msg, "heph: console shell on %s: a root shell, no login (consoleShell: true)\n", dev)
		took, err := runShell(dev, consoleShellProgram)
		if took < shellQuickExit {
			delay = min(max(2*delay, minBackoff), maxBackoff)
		} else {
			delay = 0
		}
		fmt.Fprintf(msg, "\nheph: the console shell %s; starting another\n", shellExit(err))
		time.Sleep(delay)
	}
}

// consoleDevice is the device /dev/console writes to, as the kernel
// lists its consoles in the file active ("tty0 ttyS0": the last),
// else /dev/console itself.
func consoleDevice(active string) string {
	b, err := os.ReadFile(active)
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 && !strings.Contains(f[len(f)-1], "/") {
		return "/dev/" + f[len(f)-1]
	}
	return "/dev/console"
}

// refuse says msg on the console and again for each line typed there,
// until reading it fails.
func refuse(tty io.ReadWriter, msg string) {
	fmt.Fprintln(tty, msg)
	lines := bufio.NewScanner(tty)
	for lines.Scan() {
		fmt.Fprintln(tty, msg)
	}
}

// runShell runs program in a session of its own with the terminal dev,
// opened for it, as its controlling terminal, standard input, output and
// error, in /, and says how long it ran.
func runShell(dev, program string) (time.Duration, error) {
	tty, err := os.OpenFile(dev, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return 0, err
	}
	defer tty.Close()
	cmd := exec.Command(program)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	start := time.Now()
	err = cmd.Run()
	return time.Since(start), err
}

// shellExit says how the shell ended.
func shellExit(err error) string {
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return describeExit(ee)
	case err != nil:
		return "could not start: " + err.Error()
	}
	return "exited with status 0"
}
