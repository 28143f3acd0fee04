package sandbox

import "golang.org/x/sys/unix"

// auditArch is the architecture the seccomp filter allows.
const auditArch = unix.AUDIT_ARCH_AARCH64

// x32Bit is 0: arm64 has no second ABI in the same numbering.
const x32Bit = 0

var archDenied []uintptr
