package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the seccomp filter every build runs under: a small classic
// BPF program of our own (no cgo, no library), installed by the init on
// the thread that starts the build, after the sandbox is set up and
// before the build's execve, so that the build and all its descendants
// inherit it and cannot remove it.
//
// It denies, with EPERM, what builds never need: new user namespaces
// (clone and unshare with CLONE_NEWUSER: a nested namespace would give the
// build capabilities again), keyrings (keyctl, add_key, request_key), bpf,
// ptrace and reading or writing other processes' memory, perf_event_open,
// userfaultfd, io_uring, every way to mount (mount, umount2, pivot_root,
// the new mount API), swap, reboot, kexec and kernel modules, and on
// amd64 iopl and ioperm. clone3 fails with ENOSYS: its flags are in a
// struct the filter cannot read, and libc then falls back to clone.
// System calls of another architecture (i386 on amd64) and of the x32 ABI
// kill the process.

// seccompDenied are the system calls that fail with EPERM.
var seccompDenied = append([]uintptr{
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_MOVE_MOUNT,
	unix.SYS_OPEN_TREE, unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT,
	unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_REBOOT,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_SETNS, unix.SYS_ACCT, unix.SYS_QUOTACTL, unix.SYS_OPEN_BY_HANDLE_AT,
}, archDenied...)

// Offsets in struct seccomp_data.
const (
	seccompNR   = 0
	seccompArch = 4
	seccompArg0 = 16 // the low 32 bits of args[0], on little-endian machines
)

// seccompFilter returns the BPF program.
func seccompFilter() []unix.SockFilter {
	const (
		retAllow = unix.SECCOMP_RET_ALLOW
		retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		retNoSys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
		retKill  = unix.SECCOMP_RET_KILL_PROCESS
	)
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	// Jumps are to labels, resolved at the end; jt and jf count the
	// instructions skipped.
	type jump struct {
		at     int
		jt, jf string
	}
	var prog []unix.SockFilter
	var jumps []jump
	labels := map[string]int{}
	jmp := func(code uint16, k uint32, jt, jf string) {
		jumps = append(jumps, jump{len(prog), jt, jf})
		prog = append(prog, unix.SockFilter{Code: code, K: k})
	}
	label := func(name string) { labels[name] = len(prog) }

	prog = append(prog, stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, seccompArch))
	jmp(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, auditArch, "", "kill")
	prog = append(prog, stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, seccompNR))
	if x32Bit != 0 {
		jmp(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, "kill", "")
	}
	jmp(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.SYS_CLONE, "flags", "")
	jmp(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.SYS_UNSHARE, "flags", "")
	jmp(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.SYS_CLONE3, "nosys", "")
	for _, nr := range seccompDenied {
		jmp(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(nr), "eperm", "")
	}
	prog = append(prog, stmt(unix.BPF_RET|unix.BPF_K, retAllow))
	label("flags")
	prog = append(prog, stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, seccompArg0))
	jmp(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, unix.CLONE_NEWUSER, "eperm", "")
	prog = append(prog, stmt(unix.BPF_RET|unix.BPF_K, retAllow))
	label("eperm")
	prog = append(prog, stmt(unix.BPF_RET|unix.BPF_K, retEPERM))
	label("nosys")
	prog = append(prog, stmt(unix.BPF_RET|unix.BPF_K, retNoSys))
	label("kill")
	prog = append(prog, stmt(unix.BPF_RET|unix.BPF_K, retKill))

	for _, j := range jumps {
		off := func(l string) uint8 {
			if l == "" {
				return 0
			}
			d := labels[l] - j.at - 1
			if d < 0 || d > 255 {
				panic(fmt.Sprintf("sandbox: seccomp jump to %s out of range", l))
			}
			return uint8(d)
		}
		prog[j.at].Jt, prog[j.at].Jf = off(j.jt), off(j.jf)
	}
	return prog
}

// installSeccomp puts the filter on the calling thread; the thread must
// have no_new_privs set. Children inherit it.
func installSeccomp() error {
	filter := seccompFilter()
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("sandbox: installing the seccomp filter: %w", errno)
	}
	return nil
}
