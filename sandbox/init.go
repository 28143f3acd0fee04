package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file is the sandbox's init: pid 1 of the new namespaces, started by
// Run as /proc/self/exe with argv[0] initArg0.

// setupFailed is the init's exit status when it could not set up the
// sandbox; the reason goes through the status pipe.
const setupFailed = 125

// runInit sets up the sandbox, runs the build and returns the init's exit
// status: the build's, 128+signal if a signal killed it, or setupFailed.
func runInit() int {
	// Capabilities are per thread: this thread sets up the sandbox, drops
	// its capabilities and starts the build. It is never unlocked.
	runtime.LockOSThread()
	// The init's other threads keep their capabilities. If the build, with
	// the same uid, could ptrace the init or open its /proc entries, it
	// could take them over; a non-dumpable process needs CAP_SYS_PTRACE
	// for that, which the build lacks. (The build itself is dumpable again
	// after execve.)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: init: making it non-dumpable: %v\n", err)
		return setupFailed
	}
	unix.CloseOnExec(specFD)
	unix.CloseOnExec(statusFD)
	// The build may signal its init (same uid). The Go runtime would exit
	// on these, taking the sandbox down; catch and drop them. (Ignoring
	// them instead would be inherited by the build.)
	signal.Notify(make(chan os.Signal, 1), unix.SIGHUP, unix.SIGINT, unix.SIGQUIT,
		unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2, unix.SIGALRM, unix.SIGPIPE,
		unix.SIGVTALRM, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGPWR, unix.SIGSTKFLT)
	st := initMain()
	if b, err := json.Marshal(st); err == nil {
		unix.Write(statusFD, b)
	}
	switch {
	case st.Error != "":
		return setupFailed
	case st.Signal != 0:
		return 128 + st.Signal
	}
	return st.Exit
}

func initMain() initStatus {
	f := os.NewFile(specFD, "spec")
	raw, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return failed(fmt.Errorf("sandbox: reading spec: %w", err))
	}
	var is initSpec
	if err := json.Unmarshal(raw, &is); err != nil {
		return failed(fmt.Errorf("sandbox: decoding spec: %w", err))
	}
	if err := setup(&is); err != nil {
		return failed(err)
	}
	pid, err := startBuild(&is.Spec)
	if err != nil {
		return failed(err)
	}
	st, err := reap(pid)
	if err != nil {
		return failed(err)
	}
	return st
}

func failed(err error) initStatus {
	st := initStatus{Error: err.Error()}
	errors.As(err, &st.Errno)
	return st
}

// startBuild drops this thread's capabilities and starts the build as its
// child. The build runs as uid 1000 (not root) in the user namespace, so
// it could only get capabilities from the init's ambient set, which is
// cleared here with the rest.
func startBuild(s *specJSON) (int, error) {
	if err := dropCaps(); err != nil {
		return 0, fmt.Errorf("sandbox: dropping capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("sandbox: setting no_new_privs: %w", err)
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("sandbox: opening /dev/null: %w", err)
	}
	defer unix.Close(null)
	prog, argv := s.Program, append([]string{s.Program}, s.Args...)
	what := s.Program
	if s.Builtin != "" {
		prog, argv = BuiltinArgv(s.Builtin, s.Args...)
		what = "builtin " + s.Builtin
	}
	pid, err := syscall.ForkExec(prog, argv, &syscall.ProcAttr{
		Dir:   s.Dir,
		Env:   s.Env,
		Files: []uintptr{uintptr(null), 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		var st unix.Stat_t
		if errors.Is(err, unix.ENOENT) && unix.Stat(prog, &st) == nil {
			err = fmt.Errorf("%w (the program exists: is its ELF or #! interpreter missing?)", err)
		}
		return 0, fmt.Errorf("sandbox: starting %s: %w", what, err)
	}
	return pid, nil
}

// dropCaps empties this thread's ambient, bounding, effective, permitted
// and inheritable capability sets.
func dropCaps() error {
	for c := 0; ; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the last capability
		}
		if err != nil {
			return fmt.Errorf("dropping %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return unix.Capset(&hdr, &data[0])
}

// reap waits for every child, orphans included, until the build exits,
// and reports how it ended. Whatever is left dies with the init.
func reap(pid int) (initStatus, error) {
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return initStatus{}, fmt.Errorf("sandbox: waiting for the build: %w", err)
		}
		if wpid != pid {
			continue
		}
		switch {
		case ws.Exited():
			return initStatus{Exit: ws.ExitStatus()}, nil
		case ws.Signaled():
			return initStatus{Signal: int(ws.Signal())}, nil
		}
	}
}
