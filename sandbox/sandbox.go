// Package sandbox runs one build in fresh Linux namespaces, with only its
// inputs visible, no network, a cleared environment and bounded resources.
//
// Run starts the sandbox's init: the first process of new user, mount,
// pid, uts, ipc and (unless Spec.Network) network namespaces. The init is
// a small static program built from this package's own source
// (helper.go), or, until that is built or where it cannot be, the current
// executable (/proc/self/exe) re-executed. The init builds a new root on a tmpfs,
// pivots into it, starts the build as uid 1000 without capabilities and
// under a seccomp filter, reaps every process, and exits with the build's
// status. Every program that uses this package must therefore call Init
// first thing in main (and TestMain).
//
// What a build cannot do, and the tests that say so (sandbox_test.go,
// hardening_test.go, limits_test.go, net_test.go):
//
//   - See host files: its root is a tmpfs holding its mounts, inputs
//     read-only, and /proc/self/mountinfo names no host path
//     (TestIsolation, TestMountinfoHidesHostPaths).
//   - Be host root: the build's uid 1000 is the caller's uid, or, when the
//     caller is root, a host uid of its own (ids.go), and nothing in the
//     sandbox maps to host uid 0; it has no capabilities and no_new_privs;
//     its writable mounts are given back to the caller when it ends
//     (TestNoHostRoot, TestOutputsOwnedByCaller).
//   - Make namespaces, keyrings, BPF programs, mounts, or trace processes:
//     the seccomp filter (seccomp.go) refuses them (TestSeccomp).
//   - Exhaust the host: memory and processes through a cgroup, rlimits
//     always; tmpfs sizes; what it writes; time (TestMemoryLimit,
//     TestPidsLimit, TestTmpfsLimit, TestDiskLimit, TestDiskLimitManyFiles,
//     TestTimeout).
//   - Reach the network: loopback only, unless Network (hephc's own
//     fetchers) or Outbound, which reaches public addresses only
//     (TestOutboundCannotReachHost); nor see another build's sockets
//     in a reused network namespace, nor change it (TestNetnsReuse).
//   - Outlive Run, or signal and trace the init (TestTimeout, TestCancel,
//     TestSignalInit).
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExePath is where a Builtin build finds this executable inside the sandbox.
const ExePath = "/.hephc/exe"

// UID and GID are the build user's ids inside the sandbox.
const (
	UID = 1000
	GID = 1000
)

// argv[0] values by which Init recognizes what this process was started as.
const (
	initArg0    = "hephc-sandbox-init"
	builtinArg0 = "hephc-sandbox-builtin"
)

// File descriptors the parent passes to the init.
const (
	specFD   = 3 // read end of a pipe carrying the JSON initSpec
	statusFD = 4 // write end of a pipe carrying the JSON initStatus
)

// initSpec is what the parent sends the init.
type initSpec struct {
	Spec    specJSON
	ExeLibs []string // host paths of the loader and libraries ExePath needs
	// Exe is the host path of the executable mounted at ExePath, when
	// the init is not that executable but the helper (helper.go).
	Exe string `json:",omitempty"`
	// BuildIDs: the build has host ids of its own (the caller is root),
	// which own its writable mounts; it may drop supplementary groups.
	BuildIDs bool
	// Cgroup says which limits a cgroup enforces; rlimits do the others.
	Cgroup cgroupLimits
	// HostAddrs are the host's addresses, which an Outbound build may not
	// reach.
	HostAddrs []string
	// PooledNet: the init was started in a network namespace of the
	// pool (netpool.go), whose loopback is up, and which it may not
	// change.
	PooledNet bool `json:",omitempty"`
}

type cgroupLimits struct{ Memory, Pids bool }

// specJSON is the part of Spec the init needs.
type specJSON struct {
	Program  string
	Args     []string
	Builtin  string
	Env      []string
	Dir      string
	Mounts   []mountJSON
	Network  bool
	Outbound bool
	Hostname string
	Limits   Limits
}

// mountJSON is a Mount and, for a writable directory, its overlay work
// directory, made by the parent.
type mountJSON struct {
	Mount
	Work string `json:",omitempty"`
	// Upper is the directory whose overlay the writable directory is
	// bound from, shared with the other writable directories beside it
	// (see groupWritable); "" for an overlay of the directory itself.
	Upper string `json:",omitempty"`
}

// initStatus is what the init reports back: a setup error, or how the build
// ended.
type initStatus struct {
	Error  string        `json:",omitempty"` // setup failed
	Errno  syscall.Errno `json:",omitempty"` // the errno behind Error, if any
	Exit   int           // the build's exit status
	Signal int           `json:",omitempty"` // the signal that killed the build
	Full   []string      `json:",omitempty"` // size-limited tmpfs mounts full when it failed
}

// setupError is a setup failure reported by the init. It unwraps to its
// errno, so errors.Is(err, fs.ErrNotExist) works.
type setupError struct {
	msg   string
	errno syscall.Errno
}

func (e *setupError) Error() string { return e.msg }

func (e *setupError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

// Run runs the build s describes and waits for it. It returns nil if the
// build exits with status 0, a *LimitError if a limit stopped it, an
// *ExitError if it exits otherwise, an error wrapping ctx.Err() if it was
// stopped, and other errors if the sandbox could not be set up.
//
// Run keeps the calling goroutine on its OS thread until the build ends: the
// sandbox's init is killed if that thread exits.
func Run(ctx context.Context, s *Spec) error {
	js, timeout, err := check(s)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	r := &run{spec: s, is: initSpec{Spec: js}}
	defer r.cleanup()
	if err := r.prepare(); err != nil {
		return err
	}
	return r.start(ctx, timeout)
}

// run is one Run's state on the caller's side.
type run struct {
	spec     *Spec
	is       initSpec
	ids      *hostIDs
	cg       *cgroup
	writable []string // host directories of the writable mounts
	works    []string // overlay work directories made for them
	// chowned: the writable mounts were given to the build user and
	// must be given back.
	chowned bool
	lent    []lentDir // shared overlays' upper directories lent to the build user
	// diskUsed is set to what the build had written when it exceeded
	// Limits.Disk.
	diskUsed atomic.Int64
}

// lentDir is a directory lent to the build user, and its owner.
type lentDir struct {
	path     string
	uid, gid int
}

// prepare chooses the build's host ids, gives it its writable mounts,
// makes their work directories and the build's cgroup.
func (r *run) prepare() error {
	var err error
	if r.spec.Builtin != "" {
		if r.is.ExeLibs, err = exeLibs(); err != nil {
			return err
		}
	}
	if r.ids, err = allocIDs(); err != nil {
		return err
	}
	r.is.BuildIDs = r.ids.own()
	var dirs []int // the writable directories, by index in Mounts
	for i := range r.is.Spec.Mounts {
		m := &r.is.Spec.Mounts[i]
		if !m.Writable {
			continue
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("sandbox: bind-mounting %s on %s: %w", m.Source, m.Target, err)
		}
		if !fi.IsDir() {
			continue
		}
		r.writable = append(r.writable, m.Source)
		dirs = append(dirs, i)
		if r.ids.own() {
			r.chowned = true
			if err := chownTree(m.Source, r.ids.uid, r.ids.gid); err != nil {
				return fmt.Errorf("sandbox: giving %s to the build user: %w", m.Source, err)
			}
		}
	}
	for _, g := range groupWritable(r.is.Spec.Mounts, dirs) {
		// Without a work directory, the mount is bound as it is.
		w := workDir(g.upper)
		err = os.Mkdir(w, 0o700)
		if errors.Is(err, fs.ErrExist) { // left by a build that was killed
			removeWorkDir(w)
			err = os.Mkdir(w, 0o700)
		}
		if err != nil {
			continue
		}
		r.works = append(r.works, w)
		if r.ids.own() {
			if err := os.Chown(w, r.ids.uid, r.ids.gid); err != nil {
				return fmt.Errorf("sandbox: giving %s to the build user: %w", w, err)
			}
		}
		if g.shared && r.ids.own() {
			// The overlay, mounted as the build user, looks its members
			// up in their parent: lend it for the build (the build sees
			// only the members).
			var st unix.Stat_t
			if err := unix.Stat(g.upper, &st); err != nil {
				return fmt.Errorf("sandbox: %w", err)
			}
			if err := os.Chown(g.upper, r.ids.uid, r.ids.gid); err != nil {
				return fmt.Errorf("sandbox: lending %s to the build user: %w", g.upper, err)
			}
			r.lent = append(r.lent, lentDir{g.upper, int(st.Uid), int(st.Gid)})
		}
		for _, i := range g.members {
			m := &r.is.Spec.Mounts[i]
			m.Work = w
			if g.shared {
				m.Upper = g.upper
			}
		}
	}
	if r.spec.Outbound {
		if _, err := slirpPath(); err != nil {
			return err
		}
		if r.is.HostAddrs, err = hostAddrs(); err != nil {
			return err
		}
	}
	if r.cg, err = newCgroup(cgroupHostOnce(), r.spec.Limits); err != nil {
		return err
	}
	if r.cg != nil {
		r.is.Cgroup = cgroupLimits{
			Memory: r.spec.Limits.Memory > 0 && (r.cg.v2 != "" || r.cg.memory != ""),
			Pids:   r.spec.Limits.Pids > 0 && (r.cg.v2 != "" || r.cg.pids != ""),
		}
	}
	return nil
}

// cleanup undoes prepare, once no process of the build is left: the
// writable mounts go back to the caller before the build's uid is
// released.
func (r *run) cleanup() {
	r.cg.remove()
	for _, w := range r.works {
		removeWorkDir(w)
	}
	if r.chowned {
		for _, d := range r.writable {
			chownTree(d, r.ids.ownerUID, r.ids.ownerGID)
		}
	}
	for _, l := range r.lent {
		os.Lchown(l.path, l.uid, l.gid)
	}
	if r.ids != nil {
		r.ids.release()
	}
}

// start starts the init, gives it its cgroup and network, sends it the
// spec and waits for the build.
func (r *run) start(ctx context.Context, timeout time.Duration) error {
	s := r.spec
	specR, specW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer specW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	defer statusR.Close()

	// Pdeathsig fires when the thread that started the child exits; keep
	// that thread until the init has exited.
	var cmd *exec.Cmd
	reaped := make(chan struct{})
	if pooledNet(s, r.ids) {
		r.is.PooledNet = true
		started, finished := make(chan error, 1), make(chan struct{})
		// The namespace is back in the pool when Run returns.
		defer func() { <-finished }()
		go func() {
			// A thread of its own enters the pooled namespace
			// (netpool.go) to start the init there.
			defer close(finished)
			runtime.LockOSThread()
			fd, err := enterPooledNet()
			if err == nil {
				cmd, err = r.startInit(specR, statusW)
			}
			tainted := leaveNet() != nil
			started <- err
			if err == nil {
				<-reaped
			}
			if fd >= 0 {
				putNet(fd)
			}
			if !tainted { // else the thread ends with the goroutine
				runtime.UnlockOSThread()
			}
		}()
		err = <-started
	} else {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd, err = r.startInit(specR, statusW)
	}
	specR.Close()
	statusW.Close()
	if err != nil {
		return fmt.Errorf("sandbox: starting init: %w", err)
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		close(reaped)
		done <- err
	}()
	kill := func() {
		// The whole pid namespace dies with its init.
		cmd.Process.Kill()
		<-done
	}
	if err := writeIDMaps(pid, r.ids); err != nil {
		kill()
		return err
	}
	// The init waits for its spec: until then it is alone in its
	// namespaces and runs nothing of the build.
	if r.cg != nil {
		if err := r.cg.add(pid); err != nil {
			kill()
			return err
		}
	}
	if s.Outbound {
		sl, err := startSlirp(pid, s.Stderr)
		if err != nil {
			kill()
			return err
		}
		defer sl.stop()
	}
	payload, err := json.Marshal(&r.is)
	if err != nil {
		kill()
		return fmt.Errorf("sandbox: encoding spec: %w", err)
	}
	// The init reads the whole spec first; if it dies before, the write
	// fails and Wait tells why. The write is not waited for alone: an
	// init that neither reads nor ends is stopped by the timeout or the
	// context like any build (closing specW then ends the write).
	written := make(chan error, 1)
	go func() {
		_, err := specW.Write(payload)
		specW.Close()
		written <- err
	}()

	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	diskFull := make(chan struct{})
	if s.Limits.Disk > 0 && len(r.writable) > 0 {
		stop := diskWatch(r.writable, s.Limits.Disk, func(used int64) {
			r.diskUsed.Store(used)
			close(diskFull)
		})
		defer stop()
	}
	var waitErr error
	select {
	case waitErr = <-done:
	case <-expired:
		kill()
		return &LimitError{Limit: "timeout", Value: timeout.String(), What: "it was still running, and was killed", Err: ErrTimeout}
	case <-diskFull:
		kill()
		return r.diskError(nil, "and was killed")
	case <-ctx.Done():
		kill()
		return fmt.Errorf("sandbox: %w", ctx.Err())
	}
	raw, _ := io.ReadAll(statusR)
	if len(raw) == 0 {
		if err := r.limitError(nil, nil); err != nil {
			return err
		}
		var writeErr error
		select {
		case writeErr = <-written:
		default:
		}
		if writeErr != nil {
			return fmt.Errorf("sandbox: sending spec to init: %w (init: %v)", writeErr, waitErr)
		}
		return fmt.Errorf("sandbox: init failed without reporting why (see the build log): %v", waitErr)
	}
	return r.statusError(raw)
}

// startInit starts the sandbox's init: the small init (helper.go) if it
// is there, builtins still running this executable; else, or if it is
// gone, this executable. The calling thread is locked (Pdeathsig).
func (r *run) startInit(specR, statusW *os.File) (*exec.Cmd, error) {
	newNet := !r.spec.Network && !r.is.PooledNet
	if helper := initProgram(); helper != "" {
		exe, err := selfExe()
		if err == nil {
			cmd := initCmd(helper, r.spec, newNet, specR, statusW)
			if err = cmd.Start(); err == nil {
				r.is.Exe = exe
				return cmd, nil
			}
		}
	}
	cmd := initCmd("/proc/self/exe", r.spec, newNet, specR, statusW)
	return cmd, cmd.Start()
}

// initCmd returns the command that starts prog as the sandbox's init in
// its new namespaces, passing it specR and statusW as specFD and
// statusFD. The caller writes its id maps once it has started
// (writeIDMaps).
//
// Go forks the whole caller for a new user namespace (clone without
// CLONE_VM), so that the child can wait for its id maps before it execs:
// that copies the caller's page tables and leaves every page it then
// writes to a copy-on-write fault, tens of milliseconds a build for a
// hephc holding an evaluated configuration. The init needs no id map
// before it has read its spec, which Run sends after writing them: so it
// is started with vfork (CLONE_VM|CLONE_VFORK, which Go then leaves as
// they are), the cost of an exec whatever the caller's size, and no
// process in between.
func initCmd(prog string, s *Spec, newNet bool, specR, statusW *os.File) *exec.Cmd {
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID |
		unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_VM | unix.CLONE_VFORK)
	if newNet {
		flags |= unix.CLONE_NEWNET
	}
	return &exec.Cmd{
		Path:       prog,
		Args:       []string{initArg0},
		Env:        []string{},
		Dir:        "/",
		Stdout:     s.Stdout,
		Stderr:     s.Stderr,
		ExtraFiles: []*os.File{specR, statusW},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: flags,
			// The init is not uid 0 in its user namespace, so execve
			// would drop the full capabilities it is born with. Keep, as
			// ambient capabilities, the few it needs to set up the
			// sandbox; it drops them all before starting the build.
			AmbientCaps: initCaps,
			Pdeathsig:   syscall.SIGKILL,
		},
	}
}

// writeIDMaps maps the init's user namespace: the build's uid and gid,
// 1000 inside, are ids's on the host. When those are not the caller's
// (the caller is root), the init itself keeps the caller's uid, which
// nothing in the namespace maps, and with it the caller's access to the
// mounts' sources. Only root may let the namespace drop supplementary
// groups, and must: root's own would go to the build.
func writeIDMaps(pid int, ids *hostIDs) error {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	setgroups := "deny"
	if ids.own() {
		setgroups = "allow"
	}
	for _, f := range []struct{ name, data string }{
		{"uid_map", fmt.Sprintf("%d %d 1\n", UID, ids.uid)},
		{"setgroups", setgroups},
		{"gid_map", fmt.Sprintf("%d %d 1\n", GID, ids.gid)},
	} {
		if err := os.WriteFile(dir+f.name, []byte(f.data), 0); err != nil {
			return fmt.Errorf("sandbox: mapping the init's user namespace: %w", err)
		}
	}
	return nil
}

// initCaps are the capabilities the init keeps across its execve. Being
// capabilities in the sandbox's user namespace, they give power over
// files only when their owner is mapped there: the build's.
var initCaps = []uintptr{
	unix.CAP_SYS_ADMIN,    // mount, pivot_root, sethostname
	unix.CAP_NET_ADMIN,    // bring up loopback, install routes
	unix.CAP_SETPCAP,      // drop the bounding set before starting the build
	unix.CAP_SETUID,       // start the build as uid 1000, and mount its
	unix.CAP_SETGID,       // writable overlays as it
	unix.CAP_DAC_OVERRIDE, // overlayfs's work in the build's upper layers
}

// statusError decodes the init's status report into Run's result.
func (r *run) statusError(raw []byte) error {
	var st initStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("sandbox: decoding init status %q: %w", raw, err)
	}
	var exit *ExitError
	switch {
	case st.Error != "":
		return &setupError{msg: st.Error, errno: st.Errno}
	case st.Signal != 0:
		exit = &ExitError{Code: 128 + st.Signal, Signal: unix.SignalName(syscall.Signal(st.Signal))}
	case st.Exit != 0:
		exit = &ExitError{Code: st.Exit}
	default:
		return nil
	}
	if err := r.limitError(exit, st.Full); err != nil {
		return err
	}
	return exit
}
