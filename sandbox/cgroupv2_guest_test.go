package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The host CI runs on mounts cgroup v1 alone, and hephc's v2 code would
// go untested there. TestCgroupV2InAGuest boots a kernel (Debian's, whose
// path HEPHC_TEST_V2_KERNEL gives: .ci/run fetches it) in QEMU with this
// package's test binary as its init, which mounts cgroup2 alone and runs
// the binary again, the cgroup tests, from each place hephc may find
// itself (guestPlaces): the root cgroup; a unit of its own that systemd
// delegated (Delegate=yes marks it trusted.delegate); one that it did
// not; the root of a cgroup namespace (a container's). In the delegated
// places the run must claim the cgroup (claimV2: every process of it
// moved into v2Leaf, memory and pids enabled for its children), a second
// run started from a moved process must use it too, and the limits must
// hold; in the other, no process may be moved.

// guestEnv names the place of a guest run; the kernel hands the init the
// command line's hephc_v2_guest=init as an environment variable.
const guestEnv = "hephc_v2_guest"

// guestPlaces are the places, in the order the guest's init tries them.
var guestPlaces = []guestPlace{
	{name: "root", parent: "/sys/fs/cgroup"},
	{name: "undelegated"},
	{name: "delegated", parent: "/sys/fs/cgroup/delegated.scope", moves: true},
	// The next run, from the processes delegated's moved: it moves none.
	{name: "again", parent: "/sys/fs/cgroup/delegated.scope"},
	{name: "container", parent: "/sys/fs/cgroup", moves: true},
	// A cgroup namespace's root with pid 1 outside it, not delegated
	// (systemd's ProtectControlGroups=private).
	{name: "private"},
}

// guestPlace is a place a run starts in, and what it must find there.
type guestPlace struct {
	name string
	// parent is the cgroup its builds' cgroups go below, "" for none
	// (then no process may move).
	parent string
	// moves: claiming it moves the run and the init into v2Leaf (else
	// no process moves).
	moves bool
}

// guestTests are the tests run in a place that claims its cgroup.
const guestTests = "^(TestStartsInCgroup|TestMemoryLimit|TestPidsLimit|TestPidsLimitOne|TestCgroupRemoved)$"

func TestCgroupV2InAGuest(t *testing.T) {
	kernel := os.Getenv("HEPHC_TEST_V2_KERNEL")
	if kernel == "" {
		if os.Getenv("HEPHC_E2E") == "1" {
			t.Fatal("HEPHC_TEST_V2_KERNEL is not set (.ci/run sets it to a kernel of Debian's)")
		}
		t.Skip("HEPHC_TEST_V2_KERNEL is not set: no kernel to boot with cgroup v2")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	// The init must be static: this package's tests, built without cgo.
	dir := t.TempDir()
	bin := filepath.Join(dir, "sandbox.test")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the guest's init: %v\n%s", err, out)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := writeInitrd(initrd, bin); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "1024", "-smp", "2",
		"-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 "+guestEnv+"=init")
	out, err := cmd.CombinedOutput()
	console := string(out)
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, console)
	}
	for _, p := range guestPlaces {
		if !strings.Contains(console, "HEPHC-V2-GUEST "+p.name+": ok\r\n") && !strings.Contains(console, "HEPHC-V2-GUEST "+p.name+": ok\n") {
			t.Errorf("in the guest, %s: no ok", p.name)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("the guest's console:\n%s", console)
	}
}

// writeInitrd writes a newc cpio archive holding bin as /init and the
// directories it mounts on.
func writeInitrd(path, bin string) error {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	ino := 1
	add := func(name string, mode uint32, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		b.WriteString(name + "\x00")
		b.Write(make([]byte, (4-b.Len()%4)%4))
		b.Write(data)
		b.Write(make([]byte, (4-b.Len()%4)%4))
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "r"} {
		add(d, unix.S_IFDIR|0o755, nil)
	}
	add("init", unix.S_IFREG|0o755, exe)
	add("TRAILER!!!", 0, nil)
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// guestMain is TestMain's in the guest: the init (place "init") or a run
// in one place. It never returns.
func guestMain(m *testing.M, place string) {
	if place == "init" {
		guestInit()
	}
	os.Exit(guestRun(m, place))
}

// guestInit moves to a tmpfs root (pivot_root, which every build does,
// refuses the initramfs), mounts what the tests use and cgroup2 alone,
// runs this binary in each place in turn, and powers the guest off.
func guestInit() {
	say := func(format string, args ...any) { fmt.Printf("HEPHC-V2-GUEST "+format+"\n", args...) }
	must := func(err error, what string) {
		if err != nil {
			say("init: %s: %v", what, err)
			unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		}
	}
	if len(os.Args) < 2 { // first, on the initramfs
		must(unix.Mount("tmpfs", "/r", "tmpfs", 0, "size=512m"), "the root's tmpfs")
		exe, err := os.ReadFile("/init")
		must(err, "reading /init")
		must(os.WriteFile("/r/init", exe, 0o755), "copying /init")
		for _, d := range []string{"dev", "proc", "sys", "tmp"} {
			must(os.Mkdir("/r/"+d, 0o755), "mkdir")
		}
		must(os.Chdir("/r"), "chdir")
		must(unix.Mount("/r", "/", "", unix.MS_MOVE, ""), "moving the root")
		must(unix.Chroot("."), "chroot")
		must(unix.Exec("/init", []string{"/init", "root"}, os.Environ()), "exec")
	}
	must(unix.Mount("proc", "/proc", "proc", 0, ""), "/proc")
	must(unix.Mount("sysfs", "/sys", "sysfs", 0, ""), "/sys")
	must(unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""), "/dev")
	must(unix.Mount("tmpfs", "/tmp", "tmpfs", 0, "size=256m,mode=1777"), "/tmp")
	must(unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""), "cgroup2")
	const root = "/sys/fs/cgroup"
	for _, p := range guestPlaces {
		env := []string{guestEnv + "=" + p.name, "PATH=/", "HOME=/tmp", "TMPDIR=/tmp", "HEPHC_E2E=1"}
		cmd := exec.Command("/init", "-test.v", "-test.count=1", "-test.run="+guestTests)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		if p.name != "root" && p.name != "again" {
			// A unit of its own, memory and pids available to it.
			os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+memory +pids"), 0)
			unit := filepath.Join(root, p.name+".scope")
			must(os.Mkdir(unit, 0o755), "making "+unit)
			if p.name == "delegated" {
				must(unix.Setxattr(unit, "trusted.delegate", []byte("1"), 0), "marking "+unit)
			}
			switch p.name {
			case "private":
				// The run starts from a process that joins it
				// (guestRun's "private-outer"); the init stays out.
				env[0] = guestEnv + "=private-outer"
			default:
				// The init joins it (the run is not alone there:
				// claimV2 moves the init too), and the run starts in
				// it.
				must(os.WriteFile(filepath.Join(unit, "cgroup.procs"), []byte("0"), 0), "joining "+unit)
			}
			if p.name == "container" {
				cmd.SysProcAttr = &unix.SysProcAttr{Cloneflags: unix.CLONE_NEWCGROUP | unix.CLONE_NEWNS}
			}
		}
		cmd.Env = env
		if err := cmd.Run(); err != nil {
			say("%s: %v", p.name, err)
			continue
		}
		say("%s: ok", p.name)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// guestRun checks what the run found in its place, then runs the tests
// where it claimed a cgroup.
func guestRun(m *testing.M, place string) int {
	if place == "private-outer" {
		unit := "/sys/fs/cgroup/private.scope"
		if err := os.WriteFile(filepath.Join(unit, "cgroup.procs"), []byte("0"), 0); err != nil {
			fmt.Println("joining", unit, err)
			return 1
		}
		cmd := exec.Command("/init", os.Args[1:]...)
		cmd.Env = append(os.Environ(), guestEnv+"=private")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		cmd.SysProcAttr = &unix.SysProcAttr{Cloneflags: unix.CLONE_NEWCGROUP | unix.CLONE_NEWNS}
		if err := cmd.Run(); err != nil {
			return 1
		}
		return 0
	}
	if place == "container" || place == "private" {
		// A container's view: its own cgroup the root of what it mounts.
		if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			fmt.Println("making mounts private:", err)
			return 1
		}
		unix.Unmount("/sys/fs/cgroup", unix.MNT_DETACH)
		if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
			fmt.Println("mounting the namespace's cgroup2:", err)
			return 1
		}
	}
	before, _ := os.ReadFile("/proc/1/cgroup")
	ownBefore, _ := os.ReadFile("/proc/self/cgroup")
	h := cgroupHostOnce()
	own, _ := os.ReadFile("/proc/self/cgroup")
	init, _ := os.ReadFile("/proc/1/cgroup")
	fmt.Printf("%s: found %+v; in %s", place, h, own)
	i := slices.IndexFunc(guestPlaces, func(p guestPlace) bool { return p.name == place })
	if i < 0 {
		fmt.Printf("no place %q\n", place)
		return 1
	}
	p := guestPlaces[i]
	if h.v2 != p.parent {
		fmt.Printf("%s: found the v2 cgroup %q, want %q (the init now in %s)", place, h.v2, p.parent, init)
		return 1
	}
	moved := !bytes.Equal(before, init) || !bytes.Equal(ownBefore, own)
	inLeaf := strings.HasSuffix(strings.TrimSpace(string(own)), "/"+v2Leaf) && strings.HasSuffix(strings.TrimSpace(string(init)), "/"+v2Leaf)
	switch {
	case p.moves && !inLeaf:
		fmt.Printf("%s: this run and the init are not both in %s: %s%s", place, v2Leaf, own, init)
		return 1
	case !p.moves && moved:
		fmt.Printf("%s: moved processes (the init now in %s, this run in %s)", place, init, own)
		return 1
	case p.parent == "":
		return 0
	}
	return m.Run()
}
