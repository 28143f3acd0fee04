package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Starting the init from the caller costs what the caller's size costs.
// Go makes a new user namespace with a full fork (clone without
// CLONE_VM: the child must wait for its uid map), which copies the
// caller's page tables and leaves every page it then writes to a
// copy-on-write fault: tens of milliseconds a build for a hephc holding
// an evaluated configuration. So when the helper is there, Run starts it
// first as the spawner, without new namespaces (vfork, whatever the
// caller's size), and the spawner, small, starts the init in them. It
// says the init's pid through pidFD, waits for it and exits as it did;
// Run adds the init to the build's cgroup, signals it through a pidfd
// and, since the spawner reaps it, knows the sandbox is gone when the
// spawner is.

// spawnArg0 is the spawner's argv[0]; its arguments are the build's host
// uid and gid, whether they are its own (ids.own) and whether the
// sandbox has a network namespace of its own.
const spawnArg0 = "hephc-sandbox-spawn"

// pidFD is the write end of a pipe on which the spawner says "pid N", or
// why it could not start the init.
const pidFD = 5

// runSpawn is the spawner.
func runSpawn(args []string) int {
	// The init's Pdeathsig fires when this thread exits.
	runtime.LockOSThread()
	// Not the init's: the parent reads the report to its end.
	unix.CloseOnExec(pidFD)
	report := os.NewFile(pidFD, "pid")
	fail := func(err error) int {
		fmt.Fprintf(report, "error %v", err)
		return setupFailed
	}
	if len(args) != 4 {
		return fail(fmt.Errorf("spawner: want uid, gid, own, network; got %q", args))
	}
	uid, err1 := strconv.Atoi(args[0])
	gid, err2 := strconv.Atoi(args[1])
	if err := errors.Join(err1, err2); err != nil {
		return fail(fmt.Errorf("spawner: %w", err))
	}
	ids := &hostIDs{uid: uid, gid: gid, pooled: args[2] == "own"}
	spec := &Spec{Network: args[3] == "host", Stdout: os.Stdout, Stderr: os.Stderr}
	specR, statusW := os.NewFile(specFD, "spec"), os.NewFile(statusFD, "status")
	cmd := initCmd(spec, ids, specR, statusW)
	err := cmd.Start()
	specR.Close()
	statusW.Close()
	if err != nil {
		return fail(fmt.Errorf("starting init: %w", err))
	}
	fmt.Fprintf(report, "pid %d", cmd.Process.Pid)
	report.Close()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: spawner: %v\n", err)
		return setupFailed
	}
	return 0
}

// spawned is an init started by the spawner.
type spawned struct {
	cmd   *exec.Cmd // the spawner
	pid   int       // the init's
	pidfd int
}

// spawn starts the init through the spawner, the helper at helper, and
// returns once the init waits for its spec; nil and no error if the
// helper could not be started (a cleaned cache). The caller's thread is
// locked (the spawner's Pdeathsig).
func spawn(helper string, s *Spec, ids *hostIDs, specR, statusW *os.File) (*spawned, error) {
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer reportR.Close()
	own, network := "shared", "own"
	if ids.own() {
		own = "own"
	}
	if s.Network {
		network = "host"
	}
	cmd := &exec.Cmd{
		Path:        helper,
		Args:        []string{spawnArg0, strconv.Itoa(ids.uid), strconv.Itoa(ids.gid), own, network},
		Env:         []string{},
		Dir:         "/",
		Stdout:      s.Stdout,
		Stderr:      s.Stderr,
		ExtraFiles:  []*os.File{specR, statusW, reportW},
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	err = cmd.Start()
	reportW.Close()
	if err != nil {
		return nil, nil
	}
	fail := func(err error) (*spawned, error) {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(reportR, 4096))
	if err != nil {
		return fail(fmt.Errorf("sandbox: reading the spawner's report: %w", err))
	}
	msg := string(b)
	pid, perr := strconv.Atoi(strings.TrimPrefix(msg, "pid "))
	switch {
	case strings.HasPrefix(msg, "error "):
		return fail(fmt.Errorf("sandbox: %s", strings.TrimPrefix(msg, "error ")))
	case !strings.HasPrefix(msg, "pid ") || perr != nil || pid <= 0:
		return fail(fmt.Errorf("sandbox: the spawner said %q", msg))
	}
	// The init cannot be reaped before the spawner waits for it, and it
	// waits for its spec: the pid is still the init's.
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fail(fmt.Errorf("sandbox: opening the init's pidfd: %w", err))
	}
	return &spawned{cmd: cmd, pid: pid, pidfd: pidfd}, nil
}

// kill kills the init, and with it the sandbox; the spawner then ends.
func (sp *spawned) kill() { unix.PidfdSendSignal(sp.pidfd, unix.SIGKILL, nil, 0) }

func (sp *spawned) close() { unix.Close(sp.pidfd) }
