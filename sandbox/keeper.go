package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A slot's init, the keeper: the builds of one Spec.WorkDir (a job slot
// of realize, whose builds never run at once) share one init, started
// for the first of them, instead of each starting its own. Starting an
// init costs a Go runtime's start and exit and a user and a pid
// namespace made and torn down, about a millisecond and a half of CPU a
// build here (docs/design.md).
//
// The keeper is pid 1 of its user, pid and network namespaces, started
// like an init (initproc.go) with the slot's host ids. It runs each
// build from a new thread of its own (keeperinit.go), which unshares
// mount, UTS and IPC namespaces, moves alone into the build's cgroups,
// builds the root and pivots into it, drops its capabilities, installs
// the seccomp filter and starts the build, exactly as an init's main
// thread does; after the build it kills and reaps whatever the build
// left (kill(-1) spares pid 1 alone), reports, and ends, taking its
// namespaces, capabilities and filter with it. So what a build sees is
// what it sees under an init of its own: the pid it gets is fixed
// (buildPid, set through ns_last_pid before it is forked, the keeper's
// threads having taken low pids); its /tmp, /dev/shm, hostname, SysV IPC
// and mounts are new; the processes of the builds before it are gone.
//
// What a build shares with the slot's earlier builds: the network
// namespace, which holds no socket of theirs (the keeper checks its
// socket counts after each build, as the pool does for a reused one,
// netpool.go, and retires when any is left); the rlimits, which are a
// process's (a keeper runs only builds with its Limits); and the host
// uid. The keeper is not dumpable, as an init is not, and the build
// cannot see its root (the host's), cwd or file descriptors without
// ptracing it, which needs a capability the build lacks.
//
// A build that times out, is cancelled or exceeds its disk kills the
// keeper, and with it the pid namespace, as it would kill its init; the
// slot's next build starts another. A keeper runs builds without
// Network and Outbound (those start an init of their own, as before), on
// a machine with cgroup v1 for their limits (v2 clones the init into
// the build's cgroup, which a thread cannot be; without a cgroup,
// rlimits, which are the process's, stand in), and a kernel whose
// pidfds name threads (6.9), which is how the keeper knows the build's
// mounts are gone before it says so. WaitTeardowns stops the keepers.

// KeeperEnv, set to "off", makes every build start an init of its own.
const KeeperEnv = "HEPHC_SANDBOX_KEEPER"

// keeper is one slot's init, on the caller's side.
type keeper struct {
	lim  Limits // the builds it runs
	ids  *hostIDs
	proc *os.Process
	exe  string // initSpec.Exe for its builds
	// cg is its builds' cgroup, made for the first (cgMade), or nil.
	cg     *cgroup
	cgMade bool
	// pooledNet: it runs in a network namespace of the pool (netpool.go).
	pooledNet bool
	sock      int // the caller's end of the socket (keeperFD)
	// msgs carries the keeper's messages; closed once it is gone.
	msgs     chan []byte
	exited   chan struct{} // closed once it has exited
	stopOnce sync.Once
}

// keepers are the keepers between builds, by WorkDir.
var keepers struct {
	mu   sync.Mutex
	idle map[string]*keeper
}

// keeperWanted says whether the build s runs in its slot's keeper.
func keeperWanted(s *Spec) bool {
	if s.WorkDir == "" || s.Network || s.Outbound || os.Getenv(KeeperEnv) == "off" {
		return false
	}
	h := cgroupHostOnce()
	if h.v2 != "" && (s.Limits.Memory > 0 || s.Limits.Pids > 0) {
		return false
	}
	// Without a cgroup, RLIMIT_DATA and RLIMIT_NPROC stand in for the
	// memory and pids limits (setRlimits): they would bind the keeper,
	// for good, as they bind an init for its one build.
	if (s.Limits.Memory > 0 && h.memory == "") || (s.Limits.Pids > 0 && h.pids == "") {
		return false
	}
	return threadPidfds()
}

// threadPidfds says whether this kernel makes pidfds of threads.
var threadPidfds = sync.OnceValue(func() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.PidfdOpen(unix.Gettid(), unix.PIDFD_THREAD)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
})

// takeKeeper returns the keeper of the slot dir, ready for a build with
// limits lim: the one its last build used, or a new one.
func takeKeeper(dir string, lim Limits) (*keeper, error) {
	keepers.mu.Lock()
	k := keepers.idle[dir]
	delete(keepers.idle, dir)
	keepers.mu.Unlock()
	if k != nil {
		select {
		case <-k.exited:
			k.stop()
			k = nil
		default:
			if k.lim != lim {
				k.stop()
				k = nil
			}
		}
	}
	if k != nil {
		return k, nil
	}
	return startKeeper(lim)
}

// putKeeper keeps k for the slot dir's next build.
func putKeeper(dir string, k *keeper) {
	keepers.mu.Lock()
	if keepers.idle == nil {
		keepers.idle = map[string]*keeper{}
	}
	old := keepers.idle[dir]
	keepers.idle[dir] = k
	keepers.mu.Unlock()
	if old != nil {
		old.stop()
	}
}

// stopKeepers stops every keeper between builds.
func stopKeepers() {
	keepers.mu.Lock()
	idle := keepers.idle
	keepers.idle = nil
	keepers.mu.Unlock()
	for _, k := range idle {
		k.stop()
	}
}

// startKeeper starts a keeper for builds with limits lim.
func startKeeper(lim Limits) (*keeper, error) {
	ids, err := allocIDs()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		ids.release()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "keeper")
	defer theirs.Close()
	k := &keeper{lim: lim, ids: ids, sock: fds[0], msgs: make(chan []byte, 2), exited: make(chan struct{})}
	// As for an init (start.go): a thread of its own starts the keeper
	// and is kept until it exits (Pdeathsig), from a pooled network
	// namespace if the caller is root. Whatever becomes of Pdeathsig,
	// the keeper exits at the end of its socket, which the caller's
	// death closes, once its build, if any, has ended.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		pooled := ids.own() && os.Getenv(NetPoolEnv) != "off"
		net, err := -1, error(nil)
		if pooled {
			net, err = enterPooledNet()
		}
		if err == nil {
			k.proc, k.exe, err = startKeeperProgram(!pooled, theirs)
		}
		tainted := pooled && leaveNet() != nil
		k.pooledNet = pooled
		started <- err
		if err == nil {
			k.proc.Wait()
		}
		if net >= 0 {
			putNet(net)
		}
		close(k.exited)
		if !tainted { // else the thread ends with the goroutine
			runtime.UnlockOSThread()
		}
	}()
	if err := <-started; err != nil {
		unix.Close(k.sock)
		<-k.exited
		ids.release()
		return nil, fmt.Errorf("sandbox: starting a slot's init: %w", err)
	}
	go k.read()
	if err := writeIDMaps(k.proc.Pid, ids); err != nil {
		k.stop()
		return nil, err
	}
	return k, nil
}

// startKeeperProgram starts the keeper: the helper if it is there
// (helper.go), else this executable. It returns the initSpec.Exe of its
// builds.
func startKeeperProgram(newNet bool, sock *os.File) (*os.Process, string, error) {
	start := func(prog string) (*os.Process, error) {
		flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID |
			unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_VM | unix.CLONE_VFORK)
		if newNet {
			flags |= unix.CLONE_NEWNET
		}
		return os.StartProcess(prog, []string{keeperArg0}, &os.ProcAttr{
			Dir: "/",
			// One P; unlike an init's, its garbage collector runs: it
			// lives for many builds.
			Env:   []string{"GOMAXPROCS=1"},
			Files: []*os.File{nil, nil, os.Stderr, sock},
			Sys: &syscall.SysProcAttr{
				Cloneflags:  flags,
				AmbientCaps: keeperCaps,
				Pdeathsig:   syscall.SIGKILL,
			},
		})
	}
	if helper := initProgram(); helper != "" {
		if exe, err := selfExe(); err == nil {
			if p, err := start(helper); err == nil {
				return p, exe, nil
			}
		}
	}
	p, err := start("/proc/self/exe")
	return p, "", err
}

// keeperCaps are an init's capabilities and CAP_SYS_CHROOT, which setns
// into a mount namespace needs (asCaller, mounts.go). The build's thread
// drops them all, as an init's does.
var keeperCaps = append(initCaps[:len(initCaps):len(initCaps)], unix.CAP_SYS_CHROOT)

// read passes the keeper's messages to k.msgs until it is gone.
func (k *keeper) read() {
	defer close(k.msgs)
	buf := make([]byte, 64<<10)
	for {
		n, _, _, _, err := unix.Recvmsg(k.sock, buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		k.msgs <- append([]byte(nil), buf[:n]...)
	}
}

// stop ends the keeper: asked to, between builds (it exits at the end of
// its socket), or killed, with whatever runs in its pid namespace. Then
// its cgroup is removed and its uid given back.
func (k *keeper) stop() { k.end(false) }
func (k *keeper) kill() { k.end(true) }

func (k *keeper) end(kill bool) {
	k.stopOnce.Do(func() {
		if kill {
			k.proc.Kill()
		}
		unix.Shutdown(k.sock, unix.SHUT_RDWR)
		select {
		case <-k.exited:
		case <-time.After(10 * time.Second):
			k.proc.Kill()
			<-k.exited
		}
		for range k.msgs {
		}
		unix.Close(k.sock)
		k.cg.remove()
		k.ids.release()
	})
}

// startInKeeper is start for a build in its slot's keeper.
func (r *run) startInKeeper(ctx context.Context, timeout time.Duration) (exiting func(), err error) {
	k, s := r.keeper, r.spec
	out, err := newOutputs(s)
	if err != nil {
		r.keeper = nil
		putKeeper(s.WorkDir, k)
		return nil, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		out.closeFiles()
		out.copies.Wait()
		r.keeper = nil
		putKeeper(s.WorkDir, k)
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer specW.Close()
	rights := unix.UnixRights(int(specR.Fd()), int(out.files[0].Fd()), int(out.files[1].Fd()))
	err = unix.Sendmsg(k.sock, []byte{'b'}, rights, nil, 0)
	specR.Close()
	out.closeFiles()
	if err != nil {
		k.kill()
		out.copies.Wait()
		return nil, fmt.Errorf("sandbox: sending a build to its slot's init: %w", err)
	}
	payload, err := json.Marshal(&r.is)
	if err != nil {
		k.kill()
		out.copies.Wait()
		return nil, fmt.Errorf("sandbox: encoding spec: %w", err)
	}
	go func() {
		specW.Write(payload)
		specW.Close()
	}()
	kill := func() {
		k.kill()
		out.copies.Wait()
	}
	raw, ok, err := r.awaitReport(ctx, timeout, k.msgs, kill)
	if err != nil {
		return nil, err
	}
	if !ok {
		<-k.exited
		err := r.limitError(nil, nil)
		kill()
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("sandbox: the slot's init ended without reporting why (see the build log)")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var d keeperDone
		msg, ok := <-k.msgs
		if !ok || json.Unmarshal(msg, &d) != nil || d.Retire {
			k.kill()
		} else {
			putKeeper(s.WorkDir, k)
		}
		out.copies.Wait()
	}()
	exiting = func() { <-done }
	st, err := r.decodeStatus(raw)
	if err != nil || st.Error != "" {
		exiting()
	}
	if err != nil {
		return exiting, err
	}
	return exiting, r.statusError(st)
}

// outputs are the files a build in a keeper writes its output to.
type outputs struct {
	files  [2]*os.File // stdout, stderr
	mine   []*os.File  // those made here, closed once sent
	copies sync.WaitGroup
}

// newOutputs returns the build's standard output and error: s's where
// they are files, /dev/null where they are nil, else pipes, whose reading
// ends goroutines copy to s's writers until every process of the build
// has closed them.
func newOutputs(s *Spec) (*outputs, error) {
	o := &outputs{}
	for i, w := range []io.Writer{s.Stdout, s.Stderr} {
		f, isFile := w.(*os.File)
		switch {
		case isFile:
			o.files[i] = f
		case i == 1 && sameWriter(s.Stdout, s.Stderr):
			o.files[1] = o.files[0]
		case w == nil:
			null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				o.closeFiles()
				return nil, fmt.Errorf("sandbox: %w", err)
			}
			o.files[i], o.mine = null, append(o.mine, null)
		default:
			pr, pw, err := os.Pipe()
			if err != nil {
				o.closeFiles()
				o.copies.Wait()
				return nil, fmt.Errorf("sandbox: %w", err)
			}
			o.files[i], o.mine = pw, append(o.mine, pw)
			o.copies.Add(1)
			go func() {
				defer o.copies.Done()
				io.Copy(w, pr)
				pr.Close()
			}()
		}
	}
	return o, nil
}

// closeFiles closes the files made here (the keeper has its copies).
func (o *outputs) closeFiles() {
	for _, f := range o.mine {
		f.Close()
	}
	o.mine = nil
}
