package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
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
	unix.CloseOnExec(specFD)
	unix.CloseOnExec(statusFD)
	catchSignals()
	st := initMain()
	if b, err := json.Marshal(st); err == nil {
		unix.Write(statusFD, b)
	}
	// Run reads the report up to its end, without waiting for this
	// process's exit (sandbox.go).
	unix.Close(statusFD)
	switch {
	case st.Error != "":
		return setupFailed
	case st.Signal != 0:
		return 128 + st.Signal
	}
	return st.Exit
}

// catchSignals catches and drops the signals a build may send its init
// (same uid): the Go runtime would exit on them, taking the sandbox
// down. (Ignoring them instead would be inherited by the build.)
func catchSignals() {
	signal.Notify(make(chan os.Signal, 1), unix.SIGHUP, unix.SIGINT, unix.SIGQUIT,
		unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2, unix.SIGALRM, unix.SIGPIPE,
		unix.SIGVTALRM, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGPWR, unix.SIGSTKFLT)
}

func initMain() initStatus {
	is, err := readSpec(specFD)
	if err != nil {
		return failed(err)
	}
	if err := notDumpable(); err != nil {
		return failed(err)
	}
	return runBuild(is, buildFiles{stdout: 1, stderr: 2}, -1)
}

// readSpec reads and decodes the spec from the file descriptor fd, up to
// its end, and closes fd.
func readSpec(fd int) (*initSpec, error) {
	f := os.NewFile(uintptr(fd), "spec")
	raw, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("sandbox: reading spec: %w", err)
	}
	var is initSpec
	if err := json.Unmarshal(raw, &is); err != nil {
		return nil, fmt.Errorf("sandbox: decoding spec: %w", err)
	}
	return &is, nil
}

// notDumpable makes the init non-dumpable. The init's other threads keep
// their capabilities. If the build, with the same uid, could ptrace the
// init or open its /proc entries, it could take them over; a
// non-dumpable process needs CAP_SYS_PTRACE for that, which the build
// lacks. (The build itself is dumpable again after execve.) Not before
// the spec has come: until then the caller writes the init's id maps,
// which it could not if the caller is not root, and nothing of the build
// runs.
func notDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: init: making it non-dumpable: %w", err)
	}
	return nil
}

// buildFiles are the init's file descriptors the build gets as its
// standard output and error.
type buildFiles struct{ stdout, stderr int }

// runBuild sets up the sandbox from the calling thread, which is locked
// to its goroutine and never unlocked, starts the build, waits for it
// and kills what it left. mntns is as for setup.
func runBuild(is *initSpec, files buildFiles, mntns int) initStatus {
	// The pid the build gets (setLastPid), opened while the host's /proc
	// is in view.
	lastPid := openLastPid()
	defer unix.Close(lastPid)
	warnings, err := setup(is, mntns)
	if err != nil {
		return failed(err)
	}
	// A cgroup namespace rooted where the init now is (the build's
	// cgroup: it was born there or moved before its spec was sent), so
	// that /proc/self/cgroup shows the build "/" and no host path or
	// per-build name. Kernels without cgroup namespaces (before 4.6)
	// refuse the flag.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil && err != unix.EINVAL {
		return failed(fmt.Errorf("sandbox: init: a cgroup namespace: %w", err))
	}
	for _, w := range warnings {
		unix.Write(files.stderr, []byte(fmt.Sprintf("sandbox: warning: %s\n", w)))
	}
	pid, err := startBuild(is, files, lastPid)
	if err != nil {
		return failed(err)
	}
	st, err := reap(pid)
	if err != nil {
		return failed(err)
	}
	if st.Exit != 0 || st.Signal != 0 {
		st.Full = fullTmpfs(&is.Spec)
	}
	if err := killRest(); err != nil {
		return failed(err)
	}
	return st
}

// buildPid is the build's pid in its pid namespace: the same for every
// build, whatever threads the init's Go runtime has made (they take pids
// of the same namespace) and, for a slot's init (keeper.go), whatever
// builds ran before.
const buildPid = 100

// openLastPid opens ns_last_pid, or returns -1 where the kernel has
// none (built without CONFIG_CHECKPOINT_RESTORE): there a build's pid is
// whatever comes next.
func openLastPid() int {
	fd, err := unix.Open("/proc/sys/kernel/ns_last_pid", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// setLastPid makes last the last pid given in the caller's pid
// namespace (ns_last_pid, open in fd, or -1: nothing to do), so that the
// next is last+1 if it is free. The caller holds CAP_SYS_ADMIN in the
// namespace's user namespace.
func setLastPid(fd, last int) error {
	if fd < 0 {
		return nil
	}
	if _, err := unix.Pwrite(fd, []byte(strconv.Itoa(last)), 0); err != nil {
		return fmt.Errorf("sandbox: setting ns_last_pid: %w", err)
	}
	return nil
}

// killRest kills every process left in the sandbox's pid namespace (what
// the build started and left behind) and waits until there is none: Run
// takes the report that follows as the end of the build, gives the
// writable directories back and lets its caller take the output before
// this init has exited.
func killRest() error {
	for {
		// Again before every wait: a process that was forking while an
		// earlier kill went round may have made one it did not reach.
		if err := unix.Kill(-1, unix.SIGKILL); err != nil && err != unix.ESRCH {
			return fmt.Errorf("sandbox: killing what the build left running: %w", err)
		}
		_, err := unix.Wait4(-1, nil, 0, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			return nil
		case err != nil && !errors.Is(err, unix.EINTR):
			return fmt.Errorf("sandbox: waiting for what the build left running: %w", err)
		}
	}
}

// fullTmpfs returns those of the sandbox's size-limited tmpfs mounts that
// are full.
func fullTmpfs(s *specJSON) []string {
	if s.Limits.Tmpfs <= 0 {
		return nil
	}
	var full []string
	for _, p := range []string{"/tmp", "/dev/shm", s.Dir} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) != nil || st.Type != unix.TMPFS_MAGIC || st.Blocks == 0 {
			continue
		}
		// Full, or near enough that the next write of a block failed.
		if st.Bavail*uint64(st.Bsize) < 64<<10 {
			full = append(full, p)
		}
	}
	return full
}

func failed(err error) initStatus {
	st := initStatus{Error: err.Error()}
	errors.As(err, &st.Errno)
	return st
}

// startBuild makes buildPid the next pid, drops this thread's
// capabilities but those it needs to give the build its ids, sets the
// rlimits, installs the seccomp filter and
// starts the build as its child, as uid and gid 1000 (not root) in the
// user namespace, without supplementary groups (when the caller is root;
// otherwise it keeps the caller's, which the namespace does not let it
// drop). The build's execve, as a user other than root, leaves it no
// capability: the ambient, inheritable and bounding sets are empty.
func startBuild(is *initSpec, files buildFiles, lastPid int) (int, error) {
	s := &is.Spec
	if err := setLastPid(lastPid, buildPid-1); err != nil {
		return 0, err
	}
	if err := dropCaps(); err != nil {
		return 0, fmt.Errorf("sandbox: dropping capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("sandbox: setting no_new_privs: %w", err)
	}
	if err := setRlimits(s.Limits, is.Cgroup); err != nil {
		return 0, err
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
	// Last, so that nothing above runs under the filter; ForkExec's own
	// system calls (clone without CLONE_NEWUSER, setgroups, setgid,
	// setuid, execve) are allowed.
	if err := installSeccomp(); err != nil {
		return 0, err
	}
	cred := &syscall.Credential{Uid: UID, Gid: GID, Groups: []uint32{}, NoSetGroups: !is.BuildIDs}
	pid, err := syscall.ForkExec(prog, argv, &syscall.ProcAttr{
		Dir:   s.Dir,
		Env:   s.Env,
		Files: []uintptr{uintptr(null), uintptr(files.stdout), uintptr(files.stderr)},
		Sys:   &syscall.SysProcAttr{Setsid: true, Credential: cred},
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

// dropCaps empties this thread's ambient, bounding and inheritable
// capability sets, and its effective and permitted sets but for CAP_SETUID
// and CAP_SETGID, to start the build, and CAP_KILL, to kill what it
// leaves (killRest), which the build's execve clears.
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
	keep := uint32(1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID | 1<<unix.CAP_KILL)
	data[0].Effective, data[0].Permitted = keep, keep
	return unix.Capset(&hdr, &data[0])
}

// setRlimits sets the build's rlimits: for the limits no cgroup enforces
// (cg says which), processes (per user, in the sandbox's user namespace)
// and data (per process); the size of any one file (RLIMIT_FSIZE, SIGXFSZ
// past it); and no core dumps.
func setRlimits(l Limits, cg cgroupLimits) error {
	set := func(name string, res int, v int64) error {
		if v <= 0 {
			return nil
		}
		lim := unix.Rlimit{Cur: uint64(v), Max: uint64(v)}
		if err := unix.Prlimit(0, res, &lim, nil); err != nil {
			return fmt.Errorf("sandbox: setting %s: %w", name, err)
		}
		return nil
	}
	if !cg.Pids {
		if err := set("RLIMIT_NPROC", unix.RLIMIT_NPROC, l.Pids); err != nil {
			return err
		}
	}
	if !cg.Memory {
		if err := set("RLIMIT_DATA", unix.RLIMIT_DATA, l.Memory); err != nil {
			return err
		}
	}
	if err := set("RLIMIT_FSIZE", unix.RLIMIT_FSIZE, l.Disk); err != nil {
		return err
	}
	return unix.Prlimit(0, unix.RLIMIT_CORE, &unix.Rlimit{}, nil)
}

// reap waits for every child, orphans included, until the build exits,
// and reports how it ended. killRest deals with whatever is left.
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
