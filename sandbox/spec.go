package sandbox

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Mount makes a host file or directory visible inside the sandbox.
type Mount struct {
	Source   string // host path, file or directory
	Target   string // absolute path inside the sandbox
	Writable bool   // default read-only
}

// Spec describes one sandboxed build.
type Spec struct {
	// Program is the absolute path inside the sandbox of the program to
	// exec, or "" with Builtin.
	Program string
	// Args is argv[1:]; argv[0] is Program. A builtin gets them as args.
	Args []string
	// Builtin names a function registered with RegisterBuiltin. The sandbox
	// then execs this same executable, mounted read-only at ExePath (with the
	// host's dynamic loader and the libraries it needs, if it is dynamically
	// linked), which runs that function.
	Builtin string
	// Env is the entire environment (KEY=VALUE); nothing is inherited.
	Env []string
	// Dir is the working directory inside; default "/build". If no mount
	// provides it, it is an empty writable tmpfs.
	Dir string
	// Mounts are bind-mounted, shallower targets first, read-only ones
	// read-only, all nosuid and nodev. A target may not be /, nor under
	// /proc, /dev or /.hephc; one at /tmp replaces the sandbox's empty
	// tmpfs. Mounts of directories go through overlayfs so that
	// /proc/self/mountinfo names no host path; mounts below a mounted
	// directory on the host are not seen. A writable directory's source
	// gets a sibling, .NAME.hephc-work, for the length of the build.
	Mounts []Mount
	// Network shares the host's network namespace: loopback, the host's
	// addresses, everything. Only hephc's own fetchers, whose code is
	// ours, get it. Otherwise the sandbox has a network namespace of its
	// own whose loopback is up.
	Network bool
	// Outbound gives the sandbox's own network namespace a way out, through
	// slirp4netns, to public addresses only: the host's loopback and
	// addresses, private, shared, link-local and multicast ranges are
	// unreachable, except slirp4netns's DNS forwarder, 10.0.2.3, which
	// /etc/resolv.conf names. For fixed-output builds whose builder is not
	// one of hephc's. It may not be set with Network.
	Outbound bool
	// Hostname is the sandbox's host name; default "localhost".
	Hostname string
	// Timeout limits the build's wall-clock time: 0 means DefaultTimeout,
	// a negative value no limit. On expiry every process in the sandbox is
	// killed and Run returns a *LimitError that wraps ErrTimeout.
	Timeout time.Duration
	// Limits bound the resources the build may use.
	Limits Limits
	// Stdout and Stderr receive the build's output (the caller's log); they
	// may be the same writer. Nil discards.
	Stdout, Stderr io.Writer
}

// DefaultTimeout is a build's time limit when Spec.Timeout is 0.
const DefaultTimeout = 30 * time.Minute

// Limits bound what one build may use. A zero field sets no limit of its
// own (Tmpfs: the kernel's default, half the RAM).
//
// Memory and Pids are enforced by a cgroup of the build's own (v2 where
// the host delegates the memory and pids controllers, else v1) and, as a
// floor that always holds, by rlimits: RLIMIT_NPROC (counted per user in
// the sandbox's user namespace) and RLIMIT_DATA (per process). Tmpfs is
// the size= of every tmpfs the sandbox mounts. Disk is enforced by
// RLIMIT_FSIZE for any one file and by Run, which measures the blocks
// used under the writable mounts while the build runs (every 100 ms to
// 2 s, depending on how long measuring takes) and kills the build when
// they exceed it; a fast writer may overshoot by what it writes in one
// interval.
type Limits struct {
	Memory int64 // bytes of memory, page cache and tmpfs included
	Pids   int64 // processes and threads at once
	Tmpfs  int64 // bytes in each of /tmp, /dev/shm and an unmounted Dir
	Disk   int64 // bytes written to the writable mounts, together
}

// DefaultLimits are the limits a build gets unless its derivation says
// otherwise (the schema's defaults say the same).
var DefaultLimits = Limits{
	Memory: 8 << 30,
	Pids:   4096,
	Tmpfs:  4 << 30,
	Disk:   32 << 30,
}

// ErrTimeout is wrapped by the error Run returns when the time limit
// expires.
var ErrTimeout = errors.New("build timed out")

// ExitError reports a build that did not exit with status 0.
type ExitError struct {
	Code   int    // exit status, or 128+signal number if killed by a signal
	Signal string // the signal that killed the build ("SIGKILL"), or ""
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "sandbox: build killed by " + e.Signal
	}
	return fmt.Sprintf("sandbox: build exited with status %d", e.Code)
}

// LimitError reports a build stopped by one of its limits.
type LimitError struct {
	// Limit names it: "memory", "pids", "tmpfs", "disk" or "timeout", as
	// the fields of Limits (and Spec.Timeout).
	Limit string
	// Value is the limit, for people: "64 MiB", "100 processes", "30m0s".
	Value string
	// What says what happened.
	What string
	// Err is how the build ended (an *ExitError), or ErrTimeout.
	Err error
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("sandbox: the build exceeded its %s limit of %s: %s (raise the %s limit if it needs more)", e.Limit, e.Value, e.What, e.Limit)
}

func (e *LimitError) Unwrap() error { return e.Err }

// sizeString prints a byte count for people: "64 MiB", "1.5 GiB", "512 bytes".
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	s := fmt.Sprintf("%.1f", v)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return s + " " + []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i]
}
