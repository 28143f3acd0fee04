package sandbox

import (
	"fmt"
	"strings"
)

// This file is about a build's limits: what they are, and how Run tells
// that one stopped the build.

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

// limitError returns a *LimitError if one of the build's limits made it
// fail the way exit says (nil: the init died without saying).
func (r *run) limitError(exit *ExitError, full []string) error {
	l := r.spec.Limits
	var err error
	if exit != nil {
		err = exit
	}
	if l.Disk > 0 && exit != nil && r.diskUsed.Load() == 0 && len(r.writable) > 0 {
		// A write past RLIMIT_FSIZE fails with EFBIG where SIGXFSZ is
		// ignored (as in Go programs); the build may then have failed
		// of it.
		if used := diskUsage(r.writable); used >= l.Disk {
			r.diskUsed.Store(used)
		}
	}
	switch {
	case r.diskUsed.Load() > 0:
		return r.diskError(err, "and failed")
	case r.cg != nil && r.is.Cgroup.Memory && r.cg.oomKills() > r.cgBefore.oomKills:
		return &LimitError{Limit: "memory", Value: sizeString(l.Memory),
			What: "the kernel killed a process of the build for lack of memory", Err: err}
	case r.cg != nil && r.is.Cgroup.Pids && r.cg.pidsRefused() > r.cgBefore.pidsRefused:
		return &LimitError{Limit: "pids", Value: fmt.Sprintf("%d processes and threads", l.Pids),
			What: "the kernel refused to start more", Err: err}
	case exit != nil && exit.Signal == "SIGXFSZ" && l.Disk > 0:
		return &LimitError{Limit: "disk", Value: sizeString(l.Disk),
			What: "a file grew past it, and the build was killed by SIGXFSZ", Err: err}
	case len(full) > 0:
		return &LimitError{Limit: "tmpfs", Value: sizeString(l.Tmpfs),
			What: strings.Join(full, " and ") + " (each a tmpfs of that size) filled up", Err: err}
	}
	return nil
}

// diskError reports a build that wrote too much; then says what happened
// to it.
func (r *run) diskError(err error, then string) error {
	return &LimitError{Limit: "disk", Value: sizeString(r.spec.Limits.Disk),
		What: fmt.Sprintf("it had written %s to its writable directories, %s", sizeString(r.diskUsed.Load()), then), Err: err}
}
