package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Starting the init: the process that becomes the first of the build's
// namespaces, and the id maps its parent writes for it.

// startInit starts the sandbox's init: the small init (helper.go) if it
// is there, builtins still running this executable; else, or if it is
// gone, this executable. The calling thread is locked (Pdeathsig). The
// init is started in the build's cgroup where it can be (cgroupenter.go):
// inCgroup says so. tainted says the thread could not leave that cgroup
// and must end.
func (r *run) startInit(specR, statusW *os.File) (cmd *exec.Cmd, inCgroup, tainted bool, err error) {
	newNet := !r.spec.Network && !r.is.PooledNet
	v2 := r.cg.openV2()
	if v2 != nil {
		defer v2.Close()
	}
	start := func(prog string) (*exec.Cmd, error) {
		if v2 != nil {
			cmd := initCmd(prog, r.spec, newNet, specR, statusW)
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(v2.Fd())
			if err := cmd.Start(); err == nil {
				inCgroup = true
				return cmd, nil
			}
		}
		cmd := initCmd(prog, r.spec, newNet, specR, statusW)
		return cmd, cmd.Start()
	}
	leave, entered, tainted := r.cg.enterThread()
	if tainted {
		return nil, false, true, errors.New("sandbox: could not move this thread back into its cgroup")
	}
	cmd, err = r.startProgram(start)
	if entered {
		if leave() != nil {
			// The thread stays in the build's cgroup: it ends (Run).
			return cmd, err == nil, true, err
		}
		if err == nil {
			return cmd, true, false, nil
		}
		// Started outside the cgroup (its pids limit may have refused
		// the clone): Run moves it in, or says why it cannot.
		cmd, err = r.startProgram(start)
	}
	return cmd, inCgroup, false, err
}

// startProgram starts the init with start: the helper, or this
// executable.
func (r *run) startProgram(start func(prog string) (*exec.Cmd, error)) (*exec.Cmd, error) {
	if helper := initProgram(); helper != "" {
		exe, err := selfExe()
		if err == nil {
			if cmd, err := start(helper); err == nil {
				r.is.Exe = exe
				return cmd, nil
			}
		}
	}
	return start("/proc/self/exe")
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
		Env:        initEnv,
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

// initEnv is the init's environment (the build gets Spec.Env). The
// init's work is sequential and small: one P, and no garbage collector,
// keep its Go runtime from starting threads and waking them for nothing.
var initEnv = []string{"GOMAXPROCS=1", "GOGC=off"}

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
	unix.CAP_KILL,         // kill what the build leaves running (killRest)
}
