package sandbox

import "golang.org/x/sys/unix"

// auditArch is the architecture the seccomp filter allows.
const auditArch = unix.AUDIT_ARCH_X86_64

// x32Bit marks the system calls of the x32 ABI, which the filter refuses.
const x32Bit = 0x40000000

var archDenied = []uintptr{unix.SYS_IOPL, unix.SYS_IOPERM}
