package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/builder"
	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/qemu"
	"hephc.dev/hephc/store"
)

// OVMF, Debian's UEFI firmware for QEMU (apt-get install ovmf).
var (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// diskQemuArgs are QEMU's arguments to boot the disk image img under
// OVMF, with a copy of its variables in tmp; the disk is written to (the
// loader counts boots, the self-test marks entries good).
func diskQemuArgs(img, memory, tmp string) ([]string, error) {
	fi, err := os.Stat(img)
	if err != nil {
		return nil, fmt.Errorf("--disk: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("--disk: %s is not a disk image file", img)
	}
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		return nil, fmt.Errorf("%w (install OVMF: apt-get install ovmf)", err)
	}
	if _, err := os.Stat(ovmfCode); err != nil {
		return nil, fmt.Errorf("%w (install OVMF: apt-get install ovmf)", err)
	}
	varsCopy := filepath.Join(tmp, "OVMF_VARS_4M.fd")
	if err := os.WriteFile(varsCopy, vars, 0o600); err != nil {
		return nil, err
	}
	return qemu.Config{Disk: img, OVMFCode: ovmfCode, OVMFVars: varsCopy, Memory: memory}.Args(), nil
}

// bootDisk is hephc boot --disk FILE.
func bootDisk(e *env, fs *pflag.FlagSet, disk string, args []string) error {
	if len(args) > 0 || fs.Changed("profile") || fs.Changed("generation") || fs.Changed("append") {
		return usagef("--disk boots the disk image alone: no system, --profile, --generation or --append (the loader entry has the command line)")
	}
	memory, _ := fs.GetString("memory")
	tmp, err := os.MkdirTemp("", "hephc-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	qargs, err := diskQemuArgs(absPath(e.cwd, disk), memory, tmp)
	if err != nil {
		return err
	}
	return runQEMU(e, fs, qargs, qargs) // boot.go
}

// runDiskImage is hephc image --disk -A ATTR -o FILE: the #DiskImage that
// boots ATTR, realized, copied to FILE.
func runDiskImage(e *env, fs *pflag.FlagSet, args []string) error {
	attr, _ := fs.GetString("attr")
	out, _ := fs.GetString("output")
	for _, f := range []string{"to", "oci-layout", "docker-archive", "mount-from", "tag"} {
		if fs.Changed(f) {
			return usagef("--disk writes a disk image to -o: no --%s", f)
		}
	}
	if attr == "" || out == "" {
		return usagef("--disk wants -A ATTR and -o FILE")
	}
	st, ctx, done, err := lockedStore(e)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	p, err := realizeKind(ctx, e, st, attr, args, builtins.DiskImage)
	if err != nil {
		return err
	}
	took := time.Since(start)
	dst := absPath(e.cwd, out)
	src, err := os.Open(filepath.Join(st.Physical(p), builder.DiskFile))
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".hephc-disk-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	fmt.Fprintln(e.stdout, p)
	fmt.Fprintf(e.stderr, "disk image %s: %s, built in %s; boot it with hephc boot --disk %s\n", out, store.FormatSize(n), took.Round(time.Millisecond), out)
	return nil
}
