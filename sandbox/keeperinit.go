package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// This file is a slot's init (keeper.go): pid 1 of user, pid and
// network namespaces made once, which runs the builds its caller sends,
// one at a time.

// keeperFD is the keeper's end of its SOCK_SEQPACKET socket with the
// caller. A build is one message from the caller carrying three file
// descriptors: a pipe with the JSON initSpec, and the build's standard
// output and error. The keeper answers with two: the build's
// initStatus, once it has ended and its processes are reaped, then a
// keeperDone once the thread that ran it, and with it the build's mount
// namespace, is gone.
const keeperFD = 3

// keeperDone is the keeper's second answer to a build.
type keeperDone struct {
	// Retire: the keeper must not run another build. Its network
	// namespace holds sockets the build left (TIME_WAIT), which the next
	// build must not see; or the build's setup failed, which may have
	// left its processes running (an init's exit would kill them).
	Retire bool `json:",omitempty"`
}

// runKeeper runs builds until the caller closes its end of the socket.
func runKeeper() int {
	// The main thread is kept for this goroutine: a goroutine that ends
	// locked ends its thread (keeperBuild, asCaller), but the main
	// thread cannot end, and would stay, wedged, in a build's
	// namespaces, without its pidfd ever becoming readable.
	runtime.LockOSThread()
	unix.CloseOnExec(keeperFD)
	catchSignals()
	lastPid := openLastPid()
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(3*4))
	for first := true; ; first = false {
		fds, err := recvFDs(keeperFD, buf, oob)
		if err != nil || fds == nil {
			return 0 // the caller is gone, or done
		}
		if len(fds) != 3 {
			closeFDs(fds)
			fmt.Fprintf(os.Stderr, "sandbox: keeper: a build came with %d file descriptors, not 3\n", len(fds))
			return setupFailed
		}
		var st initStatus
		thread := -1
		if first {
			// Not before the first build: until then the caller writes
			// the keeper's id maps (see notDumpable).
			if err := notDumpable(); err != nil {
				st = failed(err)
			}
		}
		if st.Error == "" {
			st, thread = keeperBuild(fds)
		} else {
			unix.Close(fds[0])
		}
		closeFDs(fds[1:])
		if err := sendJSON(keeperFD, st); err != nil {
			return setupFailed
		}
		gone := true
		if thread >= 0 {
			// The thread's exit tears down the build's mounts: the
			// caller reuses its work directory after keeperDone. A
			// thread that has not ended in a minute is taken down
			// with the keeper.
			gone = waitReadable(thread, time.Minute)
			unix.Close(thread)
		}
		// The next threads take low pids, below buildPid.
		setLastPid(lastPid, 1)
		if err := sendJSON(keeperFD, keeperDone{Retire: !gone || st.Error != "" || !netClean()}); err != nil {
			return setupFailed
		}
	}
}

// keeperBuild runs the build whose spec comes on fds[0] (which it
// closes), with fds[1] and fds[2] as its standard output and error, from
// a thread of its own: in mount, UTS and IPC namespaces of its own, it
// moves into the build's cgroups, builds the root, drops its
// capabilities, installs the seccomp filter and starts the build, as an
// init does; then it ends, taking all of that with it. It returns how
// the build ended and a pidfd of that thread, readable once it is gone
// (-1 if none was made).
func keeperBuild(fds []int) (initStatus, int) {
	is, err := readSpec(fds[0])
	if err != nil {
		return failed(err), -1
	}
	type result struct {
		st     initStatus
		thread int
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine. (New
		// threads are made by the Go runtime's template thread, not
		// cloned from this one, a locked thread.)
		runtime.LockOSThread()
		thread, err := unix.PidfdOpen(unix.Gettid(), unix.PIDFD_THREAD)
		if err != nil {
			done <- result{failed(fmt.Errorf("sandbox: keeper: a pidfd for the build's thread: %w", err)), -1}
			return
		}
		done <- result{buildOnThread(is, buildFiles{stdout: fds[1], stderr: fds[2]}), thread}
	}()
	r := <-done
	return r.st, r.thread
}

// buildOnThread is keeperBuild's thread.
func buildOnThread(is *initSpec, files buildFiles) initStatus {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC); err != nil {
		return failed(fmt.Errorf("sandbox: keeper: namespaces for the build: %w", err))
	}
	// Into the build's v1 cgroups, this thread alone (see
	// cgroupenter.go); the build is born there, and the cgroup namespace
	// runBuild makes is rooted there.
	for _, p := range is.CgroupTasks {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			err = moveSelf(f)
			f.Close()
		}
		if err != nil {
			return failed(fmt.Errorf("sandbox: keeper: moving into the build's cgroup: %w", err))
		}
	}
	mntns, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return failed(fmt.Errorf("sandbox: keeper: opening the build's mount namespace: %w", err))
	}
	defer unix.Close(mntns)
	return runBuild(is, files, mntns)
}

// recvFDs receives one message on the socket fd and returns the file
// descriptors it carries: nil at the end of the stream.
func recvFDs(fd int, buf, oob []byte) ([]int, error) {
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || (n == 0 && oobn == 0) {
			return nil, err
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, err
		}
		var fds []int
		for i := range msgs {
			got, err := unix.ParseUnixRights(&msgs[i])
			if err != nil {
				closeFDs(fds)
				return nil, err
			}
			fds = append(fds, got...)
		}
		return fds, nil
	}
}

// sendJSON sends v as one message on the socket fd.
func sendJSON(fd int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	for {
		err = unix.Sendmsg(fd, b, nil, nil, 0)
		if err != unix.EINTR {
			return err
		}
	}
}

// waitReadable waits until fd is readable (or in error), for at most d,
// and says whether it is.
func waitReadable(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(time.Until(deadline).Milliseconds()))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return true // not a descriptor to wait on
		}
		return n > 0
	}
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
