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
// Builds that share a Spec.WorkDir (a job slot's) share one init
// instead, which runs each from a thread of its own in new mount, UTS
// and IPC namespaces (keeper.go); what they can and cannot do is the
// same (TestKeeperSuite runs the tests below so).
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
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"

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
	keeperArg0  = "hephc-sandbox-keeper"
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
	// CgroupTasks are the tasks files of the build's v1 cgroups, which a
	// slot's init (keeper.go) moves the build's thread into.
	CgroupTasks []string `json:",omitempty"`
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
		if r.keeper != nil {
			putKeeper(s.WorkDir, r.keeper)
		}
		return err
	}
	var exiting func()
	if r.keeper != nil {
		exiting, err = r.startInKeeper(ctx, timeout)
	} else {
		exiting, err = r.start(ctx, timeout)
	}
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
	spec   *Spec
	is     initSpec
	ids    *hostIDs // the keeper's, if any
	keeper *keeper  // the slot's init the build runs in, or nil (keeper.go)
	cg     *cgroup  // the keeper's, if any
	// cgBefore is what cg had counted before the build, if it is the
	// keeper's.
	cgBefore struct{ oomKills, pidsRefused int64 }
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
	if keeperWanted(r.spec) {
		if r.keeper, err = takeKeeper(r.spec.WorkDir, r.spec.Limits); err != nil {
			return err
		}
		r.ids, r.is.Exe, r.is.PooledNet = r.keeper.ids, r.keeper.exe, r.keeper.pooledNet
	} else if r.ids, err = allocIDs(); err != nil {
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
	if r.keeper != nil {
		// The keeper's, made for its first build: it runs only builds
		// with its limits, one at a time.
		if !r.keeper.cgMade {
			if r.keeper.cg, err = newCgroup(cgroupHostOnce(), r.spec.Limits); err != nil {
				return err
			}
			r.keeper.cgMade = true
		}
		r.cg = r.keeper.cg
		if r.cg != nil {
			r.cgBefore.oomKills, r.cgBefore.pidsRefused = r.cg.oomKills(), r.cg.pidsRefused()
		}
	} else if r.cg, err = newCgroup(cgroupHostOnce(), r.spec.Limits); err != nil {
		return err
	}
	if r.cg != nil && r.keeper != nil {
		for _, d := range []string{r.cg.memory, r.cg.pids} {
			if d != "" {
				r.is.CgroupTasks = append(r.is.CgroupTasks, filepath.Join(d, "tasks"))
			}
		}
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
