// Package qemu runs system images in QEMU, as hephc boot and the tests
// that boot images do: always under TCG (KVM hangs on the machines hephc
// is built on), the serial console on QEMU's stdio.
//
// A Config describes the machine: a system toplevel's kernel, initramfs
// and command line, or a heph disk image under UEFI firmware (OVMF); its
// memory; host ports forwarded to the guest (QEMU's user network, from
// 127.0.0.1 only). Config.Args is QEMU's command line.
//
// Two ways to run it:
//
//   - Run boots QEMU until it exits, a timeout passes, or (RunOptions.Expect)
//     a console line contains a string: hephc boot, for people and scripts.
//
//   - Start boots QEMU and returns the Machine, whose Console a program
//     drives: ReadLine and Expect read what the guest prints (with a
//     deadline from their context), WriteLine types a line into the guest
//     (e.g. a command at the workstation's console shell); Console is also
//     an io.ReadWriter. Kill stops QEMU and Wait waits for it:
//
//     m, err := qemu.Start(ctx, qemu.Binary, cfg.Args(), qemu.StartOptions{Transcript: log})
//     if err != nil { … }
//     defer m.Kill()
//     if _, err := m.Console().Expect(ctx, "HEPH-SELFTEST OK"); err != nil { … }
//     m.Console().WriteLine("ls /bin")
//
// Secrets (the package server's reporter and admin tokens) are handed to the guest
// at boot by WithTokens, never through the store or QEMU's argv.
package qemu

// Binary is the system emulator run by default, a command on $PATH.
const Binary = "qemu-system-x86_64"

// Hint says how to get QEMU.
const Hint = "install QEMU (on Debian/Ubuntu: apt-get install qemu-system-x86)"

// TCGKernelArgs are kernel args every boot under TCG gets after the
// image's own cmdline. no_timer_check: under TCG on a loaded host the
// kernel's check that the IO-APIC timer ticks can fail and panic the
// boot ("IO-APIC + timer doesn't work!", seen in CI at load 12); the
// emulated timer works, only its check is timing-sensitive.
const TCGKernelArgs = "no_timer_check"

// Config is a machine to boot: either Kernel (with Initramfs and
// Cmdline) or Disk (with OVMFCode and OVMFVars).
type Config struct {
	Kernel, Initramfs string
	Cmdline           string // the kernel command line, as given
	Disk              string // a raw disk image, booted under OVMF; written to
	OVMFCode          string // the firmware, read-only
	OVMFVars          string // a writable copy of its variables
	Memory            string // QEMU's -m: 512, 512M, 1G
	// Forwards are host ports on 127.0.0.1 forwarded to guest ports: the
	// guest gets a NIC (NIC) on QEMU's user network; its kernel command
	// line wants DHCPKernelArg to configure it. With none, QEMU's default
	// network stays.
	Forwards []Forward
}

// Args are QEMU's arguments for c.
func (c Config) Args() []string {
	memory := c.Memory
	if memory == "" {
		memory = "512"
	}
	args := []string{
		"-accel", "tcg", // KVM hangs on the machines hephc is built on
		"-m", memory,
		"-nographic", "-no-reboot",
	}
	if c.Disk != "" {
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+c.OVMFCode,
			"-drive", "if=pflash,format=raw,file="+c.OVMFVars,
			"-drive", "if=virtio,format=raw,file="+c.Disk)
	} else {
		args = append(args, "-kernel", c.Kernel, "-initrd", c.Initramfs, "-append", c.Cmdline)
	}
	return append(args, c.netArgs()...)
}
