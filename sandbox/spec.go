package sandbox

import (
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
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
	// gets a sibling, .NAME.hephc-work, for the length of the build
	// (unless WorkDir);
	// writable directories side by side share one overlay of their
	// parent, which gets the sibling instead (and is lent to the build's
	// uid for the build when the caller is root: the build sees only the
	// mounted directories).
	Mounts []Mount
	// WorkDir, if not "", is a directory of the caller's on the file
	// system of the writable directories, outside them, which holds
	// their overlays' work directories instead of the siblings: Run
	// makes them in it if they are missing, empties them when the build
	// ends and leaves them there, so that a caller that runs builds one
	// after another in the same directories (realize's pool of build
	// directories) does not make and remove them each time. The builds
	// of one WorkDir also share one init, the slot's (keeper.go), where
	// they can. Two Runs must not use one WorkDir at once; the caller
	// calls WaitTeardowns when it is done with its WorkDirs.
	WorkDir string
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

// check validates s and returns the part the init needs, defaults filled
// in, and the time limit.
func check(s *Spec) (specJSON, time.Duration, error) {
	js := specJSON{
		Program:  s.Program,
		Args:     s.Args,
		Builtin:  s.Builtin,
		Env:      s.Env,
		Dir:      s.Dir,
		Network:  s.Network,
		Outbound: s.Outbound,
		Hostname: s.Hostname,
		Limits:   s.Limits,
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if js.Dir == "" {
		js.Dir = "/build"
	}
	if js.Hostname == "" {
		js.Hostname = "localhost"
	}
	switch {
	case s.Program != "" && s.Builtin != "":
		return js, 0, errors.New("sandbox: spec has both Program and Builtin")
	case s.Builtin != "":
		if lookupBuiltin(s.Builtin) == nil {
			return js, 0, fmt.Errorf("sandbox: no builtin %q registered in this executable", s.Builtin)
		}
	case s.Program == "":
		return js, 0, errors.New("sandbox: spec has neither Program nor Builtin")
	case !path.IsAbs(s.Program):
		return js, 0, fmt.Errorf("sandbox: program %q is not an absolute path", s.Program)
	}
	if s.WorkDir != "" {
		if err := checkInside("work directory", s.WorkDir); err != nil {
			return js, 0, err
		}
	}
	if s.Network && s.Outbound {
		return js, 0, errors.New("sandbox: spec has both Network and Outbound")
	}
	for _, v := range []int64{s.Limits.Memory, s.Limits.Pids, s.Limits.Tmpfs, s.Limits.Disk} {
		if v < 0 {
			return js, 0, fmt.Errorf("sandbox: negative limit in %+v", s.Limits)
		}
	}
	if err := checkInside("working directory", js.Dir); err != nil {
		return js, 0, err
	}
	for _, kv := range s.Env {
		if !strings.Contains(kv, "=") {
			return js, 0, fmt.Errorf("sandbox: environment entry %q is not KEY=VALUE", kv)
		}
	}
	for _, m := range s.Mounts {
		if err := checkInside("mount target", m.Target); err != nil {
			return js, 0, err
		}
		if reserved(m.Target) {
			return js, 0, fmt.Errorf("sandbox: mount target %s is reserved", m.Target)
		}
		if m.Source == "" {
			return js, 0, fmt.Errorf("sandbox: mount on %s has no source", m.Target)
		}
		js.Mounts = append(js.Mounts, mountJSON{Mount: m})
	}
	// Parents before children, so a nested mount is not hidden.
	sort.SliceStable(js.Mounts, func(i, j int) bool {
		return strings.Count(js.Mounts[i].Target, "/") < strings.Count(js.Mounts[j].Target, "/")
	})
	return js, timeout, nil
}

// reserved reports whether the sandbox itself owns the path p.
func reserved(p string) bool {
	if p == "/" {
		return true
	}
	for _, r := range []string{"/proc", "/dev", "/.hephc"} {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

func checkInside(what, p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("sandbox: %s %q is not a clean absolute path", what, p)
	}
	return nil
}
