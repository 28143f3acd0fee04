// Package sandbox runs one build in fresh Linux namespaces, with only its
// inputs visible, no network, a cleared environment and bounded resources.
//
// Run starts the sandbox's init: the first process of new user, mount,
// pid, uts, ipc and (unless Spec.Network) network namespaces. The init is
// a small static program built from this package's own source
// (helper.go), or, until that is built or where it cannot be, the current
// executable (/proc/self/exe) re-executed. The init builds a new root on a tmpfs,
// pivots into it, starts the build as uid 1000 without capabilities and
// under a seccomp filter, waits for it, kills and reaps whatever it left,
// reports how it ended, and exits (teardown.go: what Run does then).
// Every program that uses this package must therefore call Init first
// thing in main (and TestMain).
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
	"path/filepath"
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
	// Volatile: the writable directory's overlay is volatile (see
	// mountUpper).
	Volatile bool `json:",omitempty"`
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
// Run starts the sandbox's init from an OS thread of its own, kept until
// the build ends: the init is killed if that thread exits.
func Run(ctx context.Context, s *Spec) error {
	js, timeout, err := check(s)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	waitTeardown(s.WorkDir)
	s = shareStderr(s)
	r := &run{spec: s, is: initSpec{Spec: js}}
	if err := r.prepare(); err != nil {
		r.giveBack()
		r.release()
		return err
	}
	exiting, err := r.start(ctx, timeout)
	r.giveBack()
	switch {
	case exiting == nil:
		r.release()
	case s.WorkDir == "" || !outputsAreFiles(s):
		exiting()
		r.release()
	default:
		r.releaseLater(exiting)
	}
	return err
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
	for gi, g := range groupWritable(r.is.Spec.Mounts, dirs) {
		// Without a work directory, the mount is bound as it is.
		w, err := r.makeWorkDir(gi, g.upper)
		if err != nil {
			continue
		}
		volatile := volatileHelps(g.upper)
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
			m.Volatile = volatile
			if g.shared {
				m.Upper = g.upper
			}
		}
	}
	if r.spec.Outbound {
		if err := outboundAllowed(privileged()); err != nil {
			return err
		}
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

// makeWorkDir makes the empty overlay work directory of the gi'th group
// of writable directories, whose upper directory is upper, and adds it
// to r.works: beside upper, or in the caller's Spec.WorkDir, where it
// may be left, emptied, by an earlier Run.
func (r *run) makeWorkDir(gi int, upper string) (string, error) {
	w := workDir(upper)
	if r.spec.WorkDir != "" {
		w = filepath.Join(r.spec.WorkDir, strconv.Itoa(gi))
	}
	err := os.Mkdir(w, 0o700)
	if errors.Is(err, fs.ErrExist) {
		if r.spec.WorkDir == "" { // left by a build that was killed
			removeWorkDir(w)
			err = os.Mkdir(w, 0o700)
		} else {
			err = emptyWorkDir(w)
		}
	}
	if err == nil {
		r.works = append(r.works, w)
	}
	return w, err
}

// start starts the init, gives it its cgroup and network, sends it the
// spec and waits for the build. If the init has reported and not exited
// yet, exiting waits for its exit (and for its network namespace to be
// back in the pool); else it is nil.
func (r *run) start(ctx context.Context, timeout time.Duration) (exiting func(), err error) {
	exited, err := r.startAndWait(ctx, timeout)
	if exited == nil {
		return nil, err
	}
	select {
	case <-exited:
		return nil, err
	default:
		return func() { <-exited }, err
	}
}

// startAndWait is start. exited, if not nil, is closed once the init has
// exited and its network namespace is back in the pool.
func (r *run) startAndWait(ctx context.Context, timeout time.Duration) (exited <-chan struct{}, err error) {
	s := r.spec
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer specW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}

	// A thread of its own starts the init, locked to it: Pdeathsig fires
	// when the thread that started the child exits, so it is kept until
	// the init has exited; it may enter a pooled network namespace
	// (netpool.go) and the build's cgroup (cgroupenter.go) to start the
	// init there, and ends with its goroutine if it cannot leave them.
	var cmd *exec.Cmd
	var inCgroup bool
	reaped := make(chan struct{})
	r.is.PooledNet = pooledNet(s, r.ids)
	started, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		runtime.LockOSThread()
		fd, err := -1, error(nil)
		if r.is.PooledNet {
			fd, err = enterPooledNet()
		}
		tainted := false
		if err == nil {
			cmd, inCgroup, tainted, err = r.startInit(specR, statusW)
		}
		if r.is.PooledNet && leaveNet() != nil {
			tainted = true
		}
		started <- err
		if cmd != nil && err == nil {
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
	specR.Close()
	statusW.Close()
	if err != nil {
		<-finished
		statusR.Close()
		return nil, fmt.Errorf("sandbox: starting init: %w", err)
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		close(reaped)
		done <- err
	}()
	// The init's report: it closes its end once written, then exits.
	status := make(chan []byte, 1)
	go func() {
		raw, _ := io.ReadAll(statusR)
		statusR.Close()
		status <- raw
	}()
	kill := func() {
		// The whole pid namespace dies with its init.
		cmd.Process.Kill()
		<-done
		<-finished
	}
	if err := writeIDMaps(pid, r.ids); err != nil {
		kill()
		return nil, err
	}
	// The init waits for its spec: until then it is alone in its
	// namespaces and runs nothing of the build.
	if r.cg != nil && !inCgroup {
		if err := r.cg.add(pid); err != nil {
			kill()
			return nil, err
		}
	}
	if s.Outbound {
		sl, err := startSlirp(pid, s.Stderr)
		if err != nil {
			kill()
			return nil, err
		}
		defer sl.stop()
	}
	payload, err := json.Marshal(&r.is)
	if err != nil {
		kill()
		return nil, fmt.Errorf("sandbox: encoding spec: %w", err)
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
	var raw []byte
	select {
	case raw = <-status:
	case <-expired:
		kill()
		return nil, &LimitError{Limit: "timeout", Value: timeout.String(), What: "it was still running, and was killed", Err: ErrTimeout}
	case <-diskFull:
		kill()
		return nil, r.diskError(nil, "and was killed")
	case <-ctx.Done():
		kill()
		return nil, fmt.Errorf("sandbox: %w", ctx.Err())
	}
	exiting := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = <-done
		<-finished
		close(exiting)
	}()
	st, err := r.decodeStatus(raw)
	if len(raw) == 0 || err != nil || st.Error != "" {
		// Not a report of a build that ran to its end: nothing says
		// what of it is left until the init is gone.
		<-exiting
	}
	if len(raw) == 0 {
		if err := r.limitError(nil, nil); err != nil {
			return exiting, err
		}
		var writeErr error
		select {
		case writeErr = <-written:
		default:
		}
		if writeErr != nil {
			return exiting, fmt.Errorf("sandbox: sending spec to init: %w (init: %v)", writeErr, waitErr)
		}
		return exiting, fmt.Errorf("sandbox: init failed without reporting why (see the build log): %v", waitErr)
	}
	if err != nil {
		return exiting, err
	}
	return exiting, r.statusError(st)
}

// decodeStatus decodes the init's status report.
func (r *run) decodeStatus(raw []byte) (initStatus, error) {
	var st initStatus
	if len(raw) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("sandbox: decoding init status %q: %w", raw, err)
	}
	return st, nil
}

// statusError turns the init's status report into Run's result.
func (r *run) statusError(st initStatus) error {
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
