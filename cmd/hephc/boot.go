package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:    "boot",
		args:    "[--disk FILE] [--profile NAME] [--generation N] [--expect LINE] [--timeout DURATION] [--memory SIZE] [--append ARGS] [--qemu PATH] [--dry-run] [NAME|PATH]",
		summary: "boot a system (NAME of the profile's current generation, or the toplevel at PATH) in QEMU on the terminal (Ctrl-A X quits)",
		flags: func(fs *pflag.FlagSet) {
			fs.String("profile", "system", "boot a system of profile `NAME`")
			fs.Int("generation", 0, "boot a system of generation `N` of the profile (default: the current one)")
			fs.Var(new(durationFlag), "timeout", "stop QEMU after `DURATION`: 90s, 2m, or 60 for seconds (default: none; 5m with --expect)")
			fs.String("expect", "", "for scripts: exit 0 as soon as a console line contains `LINE`, 1 if QEMU stops or time runs out first")
			fs.String("memory", "512", "guest memory: `SIZE` in MiB, or with an M or G suffix")
			fs.String("append", "", "kernel `ARGS` to add to the toplevel's cmdline")
			fs.String("qemu", "qemu-system-x86_64", "the QEMU to run: a `PATH` or a command on $PATH")
			fs.String("reporter-token-file", "", "hand the sentinel the package server's reporter token in `FILE` at boot (QEMU's fw_cfg and the kernel command line; never in the store or the image)")
			fs.Bool("dry-run", false, "print the QEMU command line and run nothing")
			fs.String("disk", "", "boot the heph disk image `FILE` (hephc image --disk) under UEFI firmware (OVMF), as a machine boots its drive")
		},
		run: runBoot,
	})
}

const (
	// expectTimeout is how long --expect waits when --timeout is not given.
	expectTimeout = 5 * time.Minute
	// consoleTail is how many console lines a failed --expect shows.
	consoleTail = 25
	qemuHint    = "install QEMU (on Debian/Ubuntu: apt-get install qemu-system-x86) or name it with --qemu"
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
	if tf, _ := fs.GetString("reporter-token-file"); tf != "" && fs.Changed("disk") {
		return usagef("--reporter-token-file hands the token over on a toplevel's kernel command line; a disk image's is its boot loader's")
	}
	if disk, _ := fs.GetString("disk"); disk != "" {
		return bootDisk(e, fs, disk, args) // deploy.go
	}
	t, err := bootTarget(e, fs, args) // systems.go
	if err != nil {
		return err
	}
	qargs, err := qemuArgs(t.dir, t.name, memory, extra)
	if err != nil {
		return err
	}
	shown := qargs
	if tf, _ := fs.GetString("reporter-token-file"); tf != "" {
		var cleanup func()
		if qargs, shown, cleanup, err = reporterTokenArgs(absPath(e.cwd, tf), qargs, dry); err != nil {
			return err
		}
		defer cleanup()
	}
	if t.note != "" {
		fmt.Fprintln(e.stderr, t.note)
	}
	return runQEMU(e, fs, qargs, shown)
}

// runQEMU prints QEMU's command line (--dry-run, with shown's arguments,
// which hide a secret) or boots it with --expect and --timeout.
func runQEMU(e *env, fs *pflag.FlagSet, qargs, shown []string) error {
	expect, _ := fs.GetString("expect")
	qemu, _ := fs.GetString("qemu")
	timeout := time.Duration(*fs.Lookup("timeout").Value.(*durationFlag))
	if dry, _ := fs.GetBool("dry-run"); dry {
		fmt.Fprintln(e.stdout, shellQuote(append([]string{qemu}, shown...)))
		return nil
	}
	exe, err := exec.LookPath(qemu)
	if err != nil {
		return fmt.Errorf("%s not found: %s", qemu, qemuHint)
	}
	if expect != "" && !fs.Changed("timeout") {
		timeout = expectTimeout
	}
	return boot(context.Background(), e, exe, qargs, expect, timeout)
}

// qemuArgs are QEMU's arguments to boot the toplevel at dir (shown to the
// user as name): its kernel, initrd and cmdline, plus extra kernel args.
func qemuArgs(dir, name, memory, extra string) ([]string, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no system toplevel at %s (hephc realize builds one)", name)
	} else if err != nil {
		return nil, err
	}
	if missing := toplevelMissing(dir); len(missing) > 0 {
		return nil, fmt.Errorf("%s is not a system toplevel: it has no %s (it needs kernel, initrd and cmdline)", name, strings.Join(missing, ", "))
	}
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return nil, err
	}
	// no_timer_check: under TCG on a loaded host the kernel's check that
	// the IO-APIC timer ticks can fail and panic the boot ("IO-APIC +
	// timer doesn't work!", seen in CI at load 12); the emulated timer
	// works, only its check is timing-sensitive.
	kargs := strings.TrimSpace(string(cmdline)) + " " + tcgKernelArgs
	if extra = strings.TrimSpace(extra); extra != "" {
		kargs += " " + extra
	}
	return []string{
		"-accel", "tcg", // KVM hangs on the machines hephc is built on
		"-m", memory,
		"-nographic", "-no-reboot",
		"-kernel", filepath.Join(dir, "kernel"),
		"-initrd", filepath.Join(dir, "initrd"),
		"-append", kargs,
	}, nil
}

// tcgKernelArgs are kernel args every boot under TCG gets after the
// image's own cmdline.
const tcgKernelArgs = "no_timer_check"

var errTimedOut = errors.New("timed out")

// boot runs QEMU until it exits, the timeout passes (when not 0), a
// signal comes, or, with expect, a console line contains expect. QEMU
// never outlives it.
func boot(ctx context.Context, e *env, exe string, args []string, expect string, timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, timeout, errTimedOut)
		defer cancelTimeout()
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // if hephc dies
	cmd.WaitDelay = 5 * time.Second
	cmd.Stderr = e.stderr
	con := &console{out: e.stdout, expect: expect, found: func() { cancel(nil) }}
	if expect == "" {
		cmd.Stdin, cmd.Stdout = os.Stdin, e.stdout
		// SIGTERM lets QEMU restore the terminal; SIGKILL if it lingers.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	} else {
		// QEMU has no terminal to restore: kill it (by default), and
		// quietly.
		cmd.Stdout = con
	}
	err := cmd.Run()
	if f, ok := e.stdout.(*os.File); ok {
		if fi, _ := f.Stat(); fi != nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(f, "\x1b[?7h") // SeaBIOS turned line wrapping off
		}
	}
	con.mu.Lock()
	defer con.mu.Unlock()
	if len(con.line) > 0 {
		con.endLine()
	}
	if con.matched {
		return nil
	}
	var stopped string
	switch {
	case errors.Is(context.Cause(ctx), errTimedOut):
		stopped = fmt.Sprintf("timed out after %v; QEMU stopped", timeout)
	case ctx.Err() != nil:
		stopped = "interrupted; QEMU stopped"
	case expect == "" && err != nil:
		return fmt.Errorf("qemu: %w", err)
	case expect == "":
		return nil
	case err != nil:
		stopped = fmt.Sprintf("QEMU exited (%v)", err)
	default:
		stopped = "QEMU exited"
	}
	if expect == "" {
		return errors.New(stopped)
	}
	return fmt.Errorf("%s before a console line contained %q\n%s", stopped, expect, con.lastLines())
}

// console copies QEMU's serial console to out and watches its lines for
// expect, keeping the last few to show when it does not come.
type console struct {
	mu      sync.Mutex // Wait may return before the last Write (WaitDelay)
	out     io.Writer
	expect  string
	found   func() // called once, when a line contains expect
	matched bool
	line    []byte   // the line being written
	tail    []string // the last consoleTail lines
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.matched {
		return len(p), nil // what comes after is QEMU being stopped
	}
	shown := p
	for i, b := range p {
		if b != '\n' && len(c.line) < 1<<16 {
			c.line = append(c.line, b)
			continue
		}
		if c.endLine(); c.matched {
			shown = p[:i+1]
			break
		}
	}
	c.out.Write(shown) // a closed stdout must not stop the console
	return len(p), nil
}

func (c *console) endLine() {
	l := strings.TrimRight(string(c.line), "\r")
	c.line = c.line[:0]
	if c.tail = append(c.tail, l); len(c.tail) > consoleTail {
		c.tail = c.tail[1:]
	}
	if !c.matched && strings.Contains(l, c.expect) {
		c.matched = true
		c.found()
	}
}

// lastLines shows the end of the console.
func (c *console) lastLines() string {
	if len(c.tail) == 0 {
		return "the console showed nothing (does the cmdline say console=ttyS0?)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "last %d console lines:", len(c.tail))
	for _, l := range c.tail {
		b.WriteString("\n  | " + l)
	}
	return b.String()
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

// reporterToken is a package server token as the server makes them.
var reporterToken = regexp.MustCompile(`^heph_[A-Za-z0-9_-]{43}$`)

// reporterTokenArgs hands the reporter token in file to the guest at
// boot, never through the store: as QEMU's fw_cfg opt/heph/reporter-token
// (read from the file by QEMU) and as heph.reporter_token= on the kernel
// command line, for kernels without CONFIG_FW_CFG_SYSFS (the pinned
// gokrazy kernel). The command line goes to QEMU in a -readconfig file
// of mode 0600, not in its argv, which every user of the host can read
// (ps); "quiet" keeps the kernel from printing it on the console. It
// returns QEMU's arguments, the ones to show (the token elided) and what
// removes the file when QEMU is done.
func reporterTokenArgs(file string, qargs []string, dry bool) (run, shown []string, cleanup func(), err error) {
	cleanup = func() {}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, cleanup, fmt.Errorf("--reporter-token-file: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	f.Close()
	if err != nil {
		return nil, nil, cleanup, fmt.Errorf("--reporter-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if !reporterToken.MatchString(tok) {
		return nil, nil, cleanup, fmt.Errorf("--reporter-token-file %s: not a package server token (heph_ and 43 characters, as hephc serve token makes)", file)
	}
	i := slices.Index(qargs, "-append")
	if i < 0 || i+1 >= len(qargs) {
		return nil, nil, cleanup, errors.New("--reporter-token-file: no kernel command line to add the token to")
	}
	kargs := qargs[i+1] + " quiet"
	// QEMU's config files quote values in double quotes, without escapes,
	// at most 1023 bytes.
	if strings.ContainsAny(kargs, "\"\n") || len(kargs)+len(tok)+len(" heph.reporter_token=") > 1023 {
		return nil, nil, cleanup, errors.New("--reporter-token-file: the kernel command line holds a double quote or is too long to hand over with the token")
	}
	fwcfg := []string{"-fw_cfg", "name=opt/heph/reporter-token,file=" + strings.ReplaceAll(file, ",", ",,")}
	shown = append(slices.Clone(qargs), fwcfg...)
	shown[i+1] = kargs + " heph.reporter_token=(from " + file + ")"
	if dry {
		return shown, shown, cleanup, nil
	}
	dir, err := os.MkdirTemp("", "hephc-boot-")
	if err != nil {
		return nil, nil, cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	cfg := filepath.Join(dir, "kernel.cfg")
	if err := os.WriteFile(cfg, []byte("[machine]\n  append = \""+kargs+" heph.reporter_token="+tok+"\"\n"), 0o600); err != nil {
		cleanup()
		return nil, nil, func() {}, err
	}
	run = slices.Concat(qargs[:i], []string{"-readconfig", cfg}, qargs[i+2:], fwcfg)
	return run, shown, cleanup, nil
}
