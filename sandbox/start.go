package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Starting a build: the init started, given its cgroup, network, id maps
// and spec, and waited for until it reports how the build ended.

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

	raw, _, err := r.awaitReport(ctx, timeout, status, kill)
	if err != nil {
		return nil, err
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

// awaitReport waits for the init's report on report (ok is false if the
// channel was closed without one) unless the build's time, its disk
// limit or ctx runs out first: then it kills the build (kill) and
// returns Run's error.
func (r *run) awaitReport(ctx context.Context, timeout time.Duration, report <-chan []byte, kill func()) (raw []byte, ok bool, err error) {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	diskFull := make(chan struct{})
	if r.spec.Limits.Disk > 0 && len(r.writable) > 0 {
		stop := diskWatch(r.writable, r.spec.Limits.Disk, func(used int64) {
			r.diskUsed.Store(used)
			close(diskFull)
		})
		defer stop()
	}
	select {
	case raw, ok = <-report:
		return raw, ok, nil
	case <-expired:
		kill()
		return nil, false, &LimitError{Limit: "timeout", Value: timeout.String(), What: "it was still running, and was killed", Err: ErrTimeout}
	case <-diskFull:
		kill()
		return nil, false, r.diskError(nil, "and was killed")
	case <-ctx.Done():
		kill()
		return nil, false, fmt.Errorf("sandbox: %w", ctx.Err())
	}
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
