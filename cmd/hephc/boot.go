package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/qemu"
)

func init() {
	register(&command{
		name:    "boot",
		args:    "[--disk FILE] [--profile NAME] [--generation N] [--expect LINE] [--timeout DURATION] [--memory SIZE] [--append ARGS] [--forward tcp:127.0.0.1:HOSTPORT-:GUESTPORT]… [--qemu PATH] [--dry-run] [NAME|PATH]",
		summary: "boot a system (NAME of the profile's current generation, or the toplevel at PATH) in QEMU on the terminal (Ctrl-A X quits)",
		flags: func(fs *pflag.FlagSet) {
			fs.String("profile", "system", "boot a system of profile `NAME`")
			fs.Int("generation", 0, "boot a system of generation `N` of the profile (default: the current one)")
			fs.Var(new(durationFlag), "timeout", "stop QEMU after `DURATION`: 90s, 2m, or 60 for seconds (default: none; 5m with --expect)")
			fs.String("expect", "", "for scripts: exit 0 as soon as a console line contains `LINE`, 1 if QEMU stops or time runs out first")
			fs.String("memory", "512", "guest memory: `SIZE` in MiB, or with an M or G suffix")
			fs.String("append", "", "kernel `ARGS` to add to the toplevel's cmdline")
			fs.StringArray("forward", nil, "forward a host port to the guest: `SPEC` is tcp:127.0.0.1:HOSTPORT-:GUESTPORT (repeatable), on a virtio NIC the kernel configures by DHCP (ip=dhcp); the host side is 127.0.0.1 only")
			fs.String("qemu", "qemu-system-x86_64", "the QEMU to run: a `PATH` or a command on $PATH")
			fs.String("reporter-token-file", "", "hand the sentinel the package server's reporter token in `FILE` at boot (QEMU's fw_cfg and the kernel command line; never in the store or the image)")
			fs.String("admin-token-file", "", "hand a server image's hephc serve the admin token in `FILE` at boot (the kernel command line, heph.admin_token=; never in the store, the image or QEMU's argv)")
			fs.Bool("dry-run", false, "print the QEMU command line and run nothing")
			fs.String("disk", "", "boot the heph disk image `FILE` (hephc image --disk) under UEFI firmware (OVMF), as a machine boots its drive")
		},
		run: runBoot,
	})
}

const (
	// expectTimeout is how long --expect waits when --timeout is not given.
	expectTimeout = 5 * time.Minute
	qemuHint      = qemu.Hint + " or name it with --qemu"
)

var memorySize = regexp.MustCompile(`^[1-9][0-9]*[MmGg]?$`)

func runBoot(e *env, fs *pflag.FlagSet, args []string) error {
	memory, _ := fs.GetString("memory")
	extra, _ := fs.GetString("append")
	dry, _ := fs.GetBool("dry-run")
	if len(args) > 1 {
		return usagef("want at most one system or toplevel, got %d", len(args))
	}
	if !memorySize.MatchString(memory) {
		return usagef("--memory wants a size like 512, 512M or 1G, got %q", memory)
	}
	for _, flag := range []string{"reporter-token-file", "admin-token-file"} {
		if tf, _ := fs.GetString(flag); tf != "" && fs.Changed("disk") {
			return usagef("--%s hands the token over on a toplevel's kernel command line; a disk image's is its boot loader's", flag)
		}
	}
	forwards, err := parseForwards(fs)
	if err != nil {
		return err
	}
	if disk, _ := fs.GetString("disk"); disk != "" {
		if len(forwards) > 0 {
			return usagef("--forward needs the guest's network configured at boot (ip=dhcp on the kernel command line); a disk image's command line is its boot loader's: boot its toplevel instead")
		}
		return bootDisk(e, fs, disk, args) // diskboot.go
	}
	t, err := bootTarget(e, fs, args) // systems.go
	if err != nil {
		return err
	}
	cfg, err := toplevelConfig(t.dir, t.name, memory, extra)
	if err != nil {
		return err
	}
	if len(forwards) > 0 {
		cfg.Forwards = forwards
		if !slices.ContainsFunc(strings.Fields(cfg.Cmdline), func(a string) bool { return strings.HasPrefix(a, "ip=") }) {
			cfg.Cmdline += " " + qemu.DHCPKernelArg
		}
	}
	var tokens []qemu.BootToken
	if tf, _ := fs.GetString("reporter-token-file"); tf != "" {
		tokens = append(tokens, qemu.ReporterToken(absPath(e.cwd, tf)))
	}
	if tf, _ := fs.GetString("admin-token-file"); tf != "" {
		tokens = append(tokens, qemu.AdminToken(absPath(e.cwd, tf)))
	}
	qargs, shown, cleanup, err := qemu.WithTokens(tokens, cfg.Args(), dry)
	if err != nil {
		return err
	}
	defer cleanup()
	if t.note != "" {
		fmt.Fprintln(e.stderr, t.note)
	}
	return runQEMU(e, fs, qargs, shown)
}

// parseForwards reads the --forward flags.
func parseForwards(fs *pflag.FlagSet) ([]qemu.Forward, error) {
	specs, _ := fs.GetStringArray("forward")
	var forwards []qemu.Forward
	for _, s := range specs {
		f, err := qemu.ParseForward(s)
		if err != nil {
			return nil, usagef("--%v", err)
		}
		forwards = append(forwards, f)
	}
	if err := qemu.CheckForwards(forwards); err != nil {
		return nil, usagef("--%v", err)
	}
	return forwards, nil
}

// runQEMU prints QEMU's command line (--dry-run, with shown's arguments,
// which hide a secret) or boots it with --expect and --timeout.
func runQEMU(e *env, fs *pflag.FlagSet, qargs, shown []string) error {
	expect, _ := fs.GetString("expect")
	exe, _ := fs.GetString("qemu")
	timeout := time.Duration(*fs.Lookup("timeout").Value.(*durationFlag))
	if dry, _ := fs.GetBool("dry-run"); dry {
		fmt.Fprintln(e.stdout, shellQuote(append([]string{exe}, shown...)))
		return nil
	}
	path, err := exec.LookPath(exe)
	if err != nil {
		return fmt.Errorf("%s not found: %s", exe, qemuHint)
	}
	if expect != "" && !fs.Changed("timeout") {
		timeout = expectTimeout
	}
	return qemu.Run(context.Background(), path, qargs, qemu.RunOptions{
		Stdin: os.Stdin, Stdout: e.stdout, Stderr: e.stderr, Expect: expect, Timeout: timeout,
	})
}

// toplevelConfig is the machine booting the toplevel at dir (shown to
// the user as name): its kernel, initrd and cmdline, plus extra kernel
// args.
func toplevelConfig(dir, name, memory, extra string) (qemu.Config, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return qemu.Config{}, fmt.Errorf("no system toplevel at %s (hephc realize builds one)", name)
	} else if err != nil {
		return qemu.Config{}, err
	}
	if missing := toplevelMissing(dir); len(missing) > 0 {
		return qemu.Config{}, fmt.Errorf("%s is not a system toplevel: it has no %s (it needs kernel, initrd and cmdline)", name, strings.Join(missing, ", "))
	}
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return qemu.Config{}, err
	}
	kargs := strings.TrimSpace(string(cmdline)) + " " + qemu.TCGKernelArgs
	if extra = strings.TrimSpace(extra); extra != "" {
		kargs += " " + extra
	}
	return qemu.Config{
		Kernel:    filepath.Join(dir, "kernel"),
		Initramfs: filepath.Join(dir, "initrd"),
		Cmdline:   kargs,
		Memory:    memory,
	}, nil
}

// durationFlag is a duration as Go writes it (90s, 2m) or in seconds (60).
type durationFlag time.Duration

func (d *durationFlag) Set(s string) error {
	if n, err := strconv.ParseUint(s, 10, 31); err == nil {
		*d = durationFlag(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want a duration such as 90s or 2m, or seconds, got %q", s)
	}
	*d = durationFlag(v)
	return nil
}

func (d *durationFlag) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}

func (d *durationFlag) Type() string { return "duration" }

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote writes argv as a shell would read it back.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if shellSafe.MatchString(a) {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
