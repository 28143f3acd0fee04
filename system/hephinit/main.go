// Command hephinit starts the services of a heph image and keeps its
// console.
//
// u-root's init runs it as /bin/uinit once the system is up (file systems
// mounted, network configured). It starts the supervisor in a session of
// its own, then keeps the console and never returns to init (console.go):
// a root shell there when /etc/heph/console.json says the image has one
// (its consoleShell), else a line saying it has none. The supervisor
// starts every service of /etc/heph/services.json, in the order
// of their names, with one pipe as stdout and stderr whose lines it
// writes to the console whole (lines of services never mix), and starts each
// again when it exits as its restart policy says: "on-failure" (the
// default) when it fails, "always" whenever it exits, "never" not at all.
// It says on the console, naming the service, when one cannot start,
// e.g. because its binary is missing.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"hephc.dev/hephc/system/hephinit/internal/image"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hephinit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	services := fs.String("services", image.ServicesFile, "the services file")
	consoleFile := fs.String("console", image.ConsoleFile, "the console file")
	foreground := fs.Bool("foreground", false, "supervise in this process rather than in a background one, and leave the console alone")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	svcs, err := image.ReadServices(*services)
	if *foreground {
		if err != nil {
			fmt.Fprintf(stderr, "heph: no services started: %v\n", err)
			return 1
		}
		sup := &supervisor{console: stdout}
		sup.run(context.Background(), svcs)
		return 0
	}
	msg := consoleWriter(stderr)
	if err != nil {
		fmt.Fprintf(msg, "heph: no services started: %v\n", err)
	} else {
		background(*services, len(svcs), msg)
	}
	keepConsole(*consoleFile, msg)
	return 1 // not reached
}

// console is where the supervisor and the services write. Not the
// standard output u-root's init gives its uinit: with several consoles
// that is a pipe, which init stops reading (and the writers die of
// SIGPIPE) once the uinit has exited.
const console = "/dev/console"

// consoleWriter opens the console for writing, else says why and
// returns stderr.
func consoleWriter(stderr io.Writer) io.Writer {
	out, err := os.OpenFile(console, os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		fmt.Fprintf(stderr, "heph: %v; the services write where hephinit does\n", err)
		return stderr
	}
	return out
}

// background starts this program again as the supervisor, in a new
// session, writing to out, and leaves it running (reaping it if it
// ends).
func background(services string, n int, out io.Writer) {
	cmd := exec.Command("/proc/self/exe", "-foreground", "-services", services)
	cmd.Args[0] = "hephinit"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(out, "heph: starting the supervisor: %v\n", err)
		return
	}
	fmt.Fprintf(out, "heph: supervising %d services (pid %d)\n", n, cmd.Process.Pid)
	go func() {
		if err := cmd.Wait(); err != nil {
			fmt.Fprintf(out, "heph: the supervisor ended: %v\n", err)
		}
	}()
}
