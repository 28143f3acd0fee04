// Package sandbox runs one build in fresh Linux namespaces, with only its
// inputs visible, no network and a cleared environment.
//
// Run re-executes the current executable (/proc/self/exe) as the sandbox's
// init: the first process of new user, mount, pid, uts, ipc and (unless
// Spec.Network) network namespaces. The init builds a new root on a tmpfs,
// pivots into it, starts the build as uid 1000 without capabilities, reaps
// every process, and exits with the build's status. Every program that uses
// this package must therefore call Init first thing in main (and TestMain).
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	// recursively read-only, all nosuid and nodev. A target may not be /,
	// nor under /proc, /dev or /.hephc; one at /tmp replaces the sandbox's
	// empty tmpfs.
	Mounts []Mount
	// Network shares the host's network namespace (only fixed-output
	// derivations get this); otherwise the sandbox has a new network
	// namespace whose loopback is up.
	Network bool
	// Hostname is the sandbox's host name; default "localhost".
	Hostname string
	// Timeout, if positive, limits the build's wall-clock time. On expiry
	// every process in the sandbox is killed and Run returns an error
	// wrapping ErrTimeout.
	Timeout time.Duration
	// Stdout and Stderr receive the build's output (the caller's log); they
	// may be the same writer. Nil discards.
	Stdout, Stderr io.Writer
}

// ExePath is where a Builtin build finds this executable inside the sandbox.
const ExePath = "/.hephc/exe"

// UID and GID are the build user's ids inside the sandbox; the host's uid and
// gid are mapped to them.
const (
	UID = 1000
	GID = 1000
)

// ErrTimeout is wrapped by the error Run returns when Spec.Timeout expires.
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
}

// specJSON is the part of Spec the init needs.
type specJSON struct {
	Program  string
	Args     []string
	Builtin  string
	Env      []string
	Dir      string
	Mounts   []Mount
	Network  bool
	Hostname string
}

// initStatus is what the init reports back: a setup error, or how the build
// ended.
type initStatus struct {
	Error  string        `json:",omitempty"` // setup failed
	Errno  syscall.Errno `json:",omitempty"` // the errno behind Error, if any
	Exit   int           // the build's exit status
	Signal int           `json:",omitempty"` // the signal that killed the build
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
// build exits with status 0, an *ExitError if it exits otherwise, an error
// wrapping ErrTimeout or ctx.Err() if it was stopped, and other errors if the
// sandbox could not be set up.
//
// Run keeps the calling goroutine on its OS thread until the build ends: the
// sandbox's init is killed if that thread exits.
func Run(ctx context.Context, s *Spec) error {
	js, err := check(s)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	is := initSpec{Spec: js}
	if s.Builtin != "" {
		if is.ExeLibs, err = exeLibs(); err != nil {
			return err
		}
	}
	payload, err := json.Marshal(&is)
	if err != nil {
		return fmt.Errorf("sandbox: encoding spec: %w", err)
	}

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

	cmd := initCmd(s, specR, statusW)
	// Pdeathsig fires when the thread that started the child exits; keep
	// this goroutine on one thread until the init has exited.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	specR.Close()
	statusW.Close()
	if err != nil {
		return fmt.Errorf("sandbox: starting init: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The init reads the whole spec first; if it dies before, the write
	// fails and Wait tells why.
	_, writeErr := specW.Write(payload)
	specW.Close()

	var timeout <-chan time.Time
	if s.Timeout > 0 {
		t := time.NewTimer(s.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var waitErr error
	select {
	case waitErr = <-done:
	case <-timeout:
		cmd.Process.Kill() // the whole pid namespace dies with its init
		<-done
		return fmt.Errorf("sandbox: %w after %v", ErrTimeout, s.Timeout)
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("sandbox: %w", ctx.Err())
	}
	raw, _ := io.ReadAll(statusR)
	if len(raw) == 0 {
		if writeErr != nil {
			return fmt.Errorf("sandbox: sending spec to init: %w (init: %v)", writeErr, waitErr)
		}
		return fmt.Errorf("sandbox: init failed without reporting why (see the build log): %v", waitErr)
	}
	return statusError(raw)
}

// initCmd returns the command that starts the sandbox's init in its new
// namespaces, passing it specR and statusW as specFD and statusFD.
func initCmd(s *Spec, specR, statusW *os.File) *exec.Cmd {
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID |
		unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if !s.Network {
		flags |= unix.CLONE_NEWNET
	}
	return &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{initArg0},
		Env:        []string{},
		Dir:        "/",
		Stdout:     s.Stdout,
		Stderr:     s.Stderr,
		ExtraFiles: []*os.File{specR, statusW},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:                 flags,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: UID, HostID: os.Getuid(), Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: GID, HostID: os.Getgid(), Size: 1}},
			GidMappingsEnableSetgroups: false,
			// The init is uid 1000, not 0, in its user namespace, so execve
			// would drop the full capabilities it is born with. Keep, as
			// ambient capabilities, the few it needs to set up the sandbox;
			// it drops them all before starting the build.
			AmbientCaps: initCaps,
			Pdeathsig:   syscall.SIGKILL,
		},
	}
}

// statusError decodes the init's status report into Run's result.
func statusError(raw []byte) error {
	var st initStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("sandbox: decoding init status %q: %w", raw, err)
	}
	switch {
	case st.Error != "":
		return &setupError{msg: st.Error, errno: st.Errno}
	case st.Signal != 0:
		return &ExitError{Code: 128 + st.Signal, Signal: unix.SignalName(syscall.Signal(st.Signal))}
	case st.Exit != 0:
		return &ExitError{Code: st.Exit}
	}
	return nil
}

// initCaps are the capabilities the init keeps across its execve.
var initCaps = []uintptr{
	unix.CAP_SYS_ADMIN, // mount, pivot_root, sethostname
	unix.CAP_NET_ADMIN, // bring up loopback
	unix.CAP_SETPCAP,   // drop the bounding set before starting the build
}

// check validates s and returns the part the init needs, defaults filled in.
func check(s *Spec) (specJSON, error) {
	js := specJSON{
		Program:  s.Program,
		Args:     s.Args,
		Builtin:  s.Builtin,
		Env:      s.Env,
		Dir:      s.Dir,
		Network:  s.Network,
		Hostname: s.Hostname,
	}
	if js.Dir == "" {
		js.Dir = "/build"
	}
	if js.Hostname == "" {
		js.Hostname = "localhost"
	}
	switch {
	case s.Program != "" && s.Builtin != "":
		return js, errors.New("sandbox: spec has both Program and Builtin")
	case s.Builtin != "":
		if lookupBuiltin(s.Builtin) == nil {
			return js, fmt.Errorf("sandbox: no builtin %q registered in this executable", s.Builtin)
		}
	case s.Program == "":
		return js, errors.New("sandbox: spec has neither Program nor Builtin")
	case !path.IsAbs(s.Program):
		return js, fmt.Errorf("sandbox: program %q is not an absolute path", s.Program)
	}
	if err := checkInside("working directory", js.Dir); err != nil {
		return js, err
	}
	for _, kv := range s.Env {
		if !strings.Contains(kv, "=") {
			return js, fmt.Errorf("sandbox: environment entry %q is not KEY=VALUE", kv)
		}
	}
	for _, m := range s.Mounts {
		if err := checkInside("mount target", m.Target); err != nil {
			return js, err
		}
		if reserved(m.Target) {
			return js, fmt.Errorf("sandbox: mount target %s is reserved", m.Target)
		}
		if m.Source == "" {
			return js, fmt.Errorf("sandbox: mount on %s has no source", m.Target)
		}
	}
	// Parents before children, so a nested mount is not hidden.
	js.Mounts = append([]Mount(nil), s.Mounts...)
	sort.SliceStable(js.Mounts, func(i, j int) bool {
		return strings.Count(js.Mounts[i].Target, "/") < strings.Count(js.Mounts[j].Target, "/")
	})
	return js, nil
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
