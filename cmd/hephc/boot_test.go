package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hephcIn runs hephc in dir and returns its exit code, stdout and stderr.
func hephcIn(dir string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: func(string) string { return "" }}
	code := run(e, args)
	return code, stdout.String(), stderr.String()
}

// fakeToplevel makes dir/sys, a toplevel with the given files (name to
// contents), and dir/result pointing at it; it returns dir/sys.
func fakeToplevel(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	sys := filepath.Join(dir, "sys")
	if err := os.MkdirAll(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(sys, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(sys, filepath.Join(dir, "result")); err != nil {
		t.Fatal(err)
	}
	return sys
}

// noDefaultStore keeps boot from finding a profile in the default store
// (boot with no argument follows its generations): HOME is empty.
func noDefaultStore(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
}

var toplevelFiles = map[string]string{"kernel": "vmlinuz", "initrd": "cpio", "cmdline": "console=ttyS0 panic=-1\n"}

// fakeQEMU writes an executable shell script that stands in for QEMU:
// it writes its pid to pidfile and its arguments, one a line, to argsfile,
// then runs body.
func fakeQEMU(t *testing.T, body string) (exe, pidfile, argsfile string) {
	t.Helper()
	dir := t.TempDir()
	exe = filepath.Join(dir, "qemu")
	pidfile = filepath.Join(dir, "pid")
	argsfile = filepath.Join(dir, "args")
	script := fmt.Sprintf("#!/bin/sh\necho $$ >%s.tmp && mv %[1]s.tmp %[1]s\nprintf '%%s\\n' \"$@\" >%s\n%s\n", pidfile, argsfile, body)
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return exe, pidfile, argsfile
}

// alive reports whether the process whose pid is in pidfile still runs
// (a zombie does not).
func alive(t *testing.T, pidfile string) bool {
	t.Helper()
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("the fake QEMU never started: %v", err)
	}
	stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...
	s := string(stat)
	return !strings.HasPrefix(s[strings.LastIndex(s, ")")+1:], " Z")
}

func TestBootCommandLine(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	sys := fakeToplevel(t, dir, toplevelFiles)
	sys, _ = filepath.EvalSymlinks(sys)
	code, stdout, stderr := hephcIn(dir, "boot", "--dry-run")
	want := "qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -kernel " + sys + "/kernel -initrd " + sys + "/initrd -append 'console=ttyS0 panic=-1 no_timer_check'\n"
	if code != 0 || stdout != want {
		t.Errorf("boot --dry-run: exit %d, stdout\n%s\nwant exit 0, stdout\n%s\nstderr: %s", code, stdout, want, stderr)
	}

	code, stdout, stderr = hephcIn(dir, "boot", "--dry-run", "--memory", "1G", "--qemu", "/opt/q emu", "--append", "quiet  it's=1", "sys")
	want = "'/opt/q emu' -accel tcg -m 1G -nographic -no-reboot -kernel " + sys + "/kernel -initrd " + sys + "/initrd -append 'console=ttyS0 panic=-1 no_timer_check quiet  it'\\''s=1'\n"
	if code != 0 || stdout != want {
		t.Errorf("boot --dry-run with flags: exit %d, stdout\n%s\nwant exit 0, stdout\n%s\nstderr: %s", code, stdout, want, stderr)
	}

	// QEMU itself gets the same arguments.
	exe, _, argsfile := fakeQEMU(t, "echo BOOTED")
	code, _, stderr = hephcIn(dir, "boot", "--qemu", exe, "--expect", "BOOTED", "--append", "quiet  it's=1")
	if code != 0 {
		t.Fatalf("boot with a fake QEMU: exit %d, stderr: %s", code, stderr)
	}
	got, _ := os.ReadFile(argsfile)
	wantArgs := strings.Join([]string{"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", sys + "/kernel", "-initrd", sys + "/initrd", "-append", "console=ttyS0 panic=-1 no_timer_check quiet  it's=1"}, "\n") + "\n"
	if string(got) != wantArgs {
		t.Errorf("QEMU got arguments\n%s\nwant\n%s", got, wantArgs)
	}
}

func TestBootMissingQEMU(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	fakeToplevel(t, dir, toplevelFiles)
	code, _, stderr := hephcIn(dir, "boot", "--qemu", "/nonexistent/qemu-system-x86_64")
	want := "hephc: /nonexistent/qemu-system-x86_64 not found: install QEMU (on Debian/Ubuntu: apt-get install qemu-system-x86) or name it with --qemu\n"
	if code != 1 || stderr != want {
		t.Errorf("got exit %d, stderr %q; want exit 1, stderr %q", code, stderr, want)
	}

	t.Setenv("PATH", t.TempDir())
	code, _, stderr = hephcIn(dir, "boot")
	if code != 1 || !strings.Contains(stderr, "qemu-system-x86_64 not found: install QEMU (on Debian/Ubuntu: apt-get install qemu-system-x86)") {
		t.Errorf("without QEMU on $PATH: got exit %d, stderr %q; want exit 1 and the install hint", code, stderr)
	}
}

func TestBootNotAToplevel(t *testing.T) {
	noDefaultStore(t)
	for _, tc := range []struct {
		name  string
		files map[string]string // nil: no ./result at all
		args  []string
		want  string
	}{
		{"no result", nil, nil, "hephc: no system toplevel at ./result (hephc realize builds one)\n"},
		{"no kernel", map[string]string{"initrd": "x", "cmdline": "x"}, nil, "hephc: ./result is not a system toplevel: it has no kernel (it needs kernel, initrd and cmdline)\n"},
		{"a package", map[string]string{"bin": ""}, []string{"sys"}, "hephc: sys is not a system toplevel: it has no kernel, initrd, cmdline (it needs kernel, initrd and cmdline)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.files != nil {
				fakeToplevel(t, dir, tc.files)
			}
			code, _, stderr := hephcIn(dir, append([]string{"boot", "--qemu", "/bin/false"}, tc.args...)...)
			if code != 1 || stderr != tc.want {
				t.Errorf("got exit %d, stderr %q; want exit 1, stderr %q", code, stderr, tc.want)
			}
		})
	}
}

// Systems are named by the last label of their attribute path, or the
// whole path where two share it; link names are file names.
func TestSystemNames(t *testing.T) {
	for _, tc := range []struct {
		attrs []string
		want  map[string]string
	}{
		{[]string{"images.workstation", "images.server"}, map[string]string{"workstation": "images.workstation", "server": "images.server"}},
		{[]string{"a.x", "b.x", "c.y"}, map[string]string{"a.x": "a.x", "b.x": "b.x", "y": "c.y"}},
		{[]string{`images."my box/1"`, "top"}, map[string]string{"my_box_1": `images."my box/1"`, "top": "top"}},
		{nil, map[string]string{}},
	} {
		if got := systemNames(tc.attrs); !maps.Equal(got, tc.want) {
			t.Errorf("systemNames(%q) = %v, want %v", tc.attrs, got, tc.want)
		}
	}
}

func TestBootUsage(t *testing.T) {
	dir := t.TempDir()
	fakeToplevel(t, dir, toplevelFiles)
	for _, args := range [][]string{
		{"--memory", "lots"},
		{"--timeout", "soon"},
		{"--timeout", "-5s"},
		{"sys", "sys"},
		{"--generation", "-1"},
	} {
		code, _, stderr := hephcIn(dir, append([]string{"boot", "--dry-run"}, args...)...)
		if code != 2 || !strings.Contains(stderr, "usage: hephc boot") {
			t.Errorf("boot %q: got exit %d, stderr %q; want exit 2 and the usage", args, code, stderr)
		}
	}
	var d durationFlag
	for s, want := range map[string]time.Duration{"60": time.Minute, "90s": 90 * time.Second, "2m": 2 * time.Minute} {
		if err := d.Set(s); err != nil || time.Duration(d) != want {
			t.Errorf("--timeout %s: got %v, %v; want %v", s, time.Duration(d), err, want)
		}
	}
}

func TestBootExpect(t *testing.T) {
	noDefaultStore(t)
	for _, tc := range []struct {
		name    string
		body    string // the fake QEMU's script
		args    []string
		code    int
		stdout  string   // the console copied to stdout
		stderr  []string // what stderr must contain
		without []string // and not
	}{{
		name:   "found",
		body:   "echo booting; printf 'HEPH-SELFTEST'; sleep 0.2; printf ' OK\\r\\n'; exec sleep 60",
		args:   []string{"--expect", "HEPH-SELFTEST OK", "--timeout", "30s"},
		stdout: "booting\nHEPH-SELFTEST OK\r\n",
	}, {
		name: "found at the very end",
		body: "printf 'login:'",
		args: []string{"--expect", "login:"},
	}, {
		name:    "timeout",
		body:    "i=1; while [ $i -le 40 ]; do echo line $i; i=$((i+1)); done; exec sleep 60",
		args:    []string{"--expect", "HEPH-SELFTEST OK", "--timeout", "1s"},
		code:    1,
		stderr:  []string{"hephc: timed out after 1s; QEMU stopped before a console line contained \"HEPH-SELFTEST OK\"\nlast 25 console lines:\n  | line 16\n", "  | line 40\n"},
		without: []string{"line 15\n"},
	}, {
		name:   "QEMU exits first",
		body:   "echo Kernel panic; exit 3",
		args:   []string{"--expect", "HEPH-SELFTEST OK"},
		code:   1,
		stderr: []string{"hephc: QEMU exited (exit status 3) before a console line contained \"HEPH-SELFTEST OK\"\nlast 1 console lines:\n  | Kernel panic\n"},
	}, {
		name:   "silent",
		body:   "exit 0",
		args:   []string{"--expect", "HEPH-SELFTEST OK"},
		code:   1,
		stderr: []string{"hephc: QEMU exited before a console line contained \"HEPH-SELFTEST OK\"\nthe console showed nothing (does the cmdline say console=ttyS0?)\n"},
	}, {
		name:   "interactive timeout",
		body:   "echo hello; exec sleep 60",
		args:   []string{"--timeout", "1s"},
		code:   1,
		stdout: "hello\n",
		stderr: []string{"hephc: timed out after 1s; QEMU stopped\n"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fakeToplevel(t, dir, toplevelFiles)
			exe, pidfile, _ := fakeQEMU(t, tc.body)
			start := time.Now()
			code, stdout, stderr := hephcIn(dir, append([]string{"boot", "--qemu", exe}, tc.args...)...)
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("boot took %v", took)
			}
			if code != tc.code {
				t.Errorf("got exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if tc.stdout != "" && stdout != tc.stdout {
				t.Errorf("got stdout %q, want %q", stdout, tc.stdout)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, stderr)
				}
			}
			for _, s := range tc.without {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr contains %q:\n%s", s, stderr)
				}
			}
			if code == 0 && stderr != "" {
				t.Errorf("stderr: %s", stderr)
			}
			if alive(t, pidfile) {
				t.Errorf("the fake QEMU still runs")
			}
		})
	}
}

// TestBootSignal checks that QEMU dies with hephc: stopped cleanly on
// SIGINT and SIGTERM, killed by the kernel when hephc is killed.
func TestBootSignal(t *testing.T) {
	hephc, err := exec.LookPath("hephc") // testscript.Main put it there
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fakeToplevel(t, dir, toplevelFiles)
			exe, pidfile, _ := fakeQEMU(t, "exec sleep 60")
			cmd := exec.Command(hephc, "boot", "--qemu", exe, "--expect", "never")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME=", "HEPHC_STORE=") // no profile: ./result
			// A file, not a pipe: Wait must not wait for what holds it.
			stderrFile := filepath.Join(dir, "stderr")
			f, err := os.Create(stderrFile)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd.Stderr = f
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			for _, err := os.Stat(pidfile); err != nil; _, err = os.Stat(pidfile) {
				time.Sleep(10 * time.Millisecond)
			}
			cmd.Process.Signal(sig)
			err = cmd.Wait()
			stderr, _ := os.ReadFile(stderrFile)
			if sig != syscall.SIGKILL && (cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(stderr), "interrupted; QEMU stopped")) {
				t.Errorf("got %v, stderr %q; want exit 1, interrupted", err, stderr)
			}
			deadline := time.Now().Add(5 * time.Second)
			for alive(t, pidfile) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if alive(t, pidfile) {
				t.Errorf("the fake QEMU outlived hephc")
			}
		})
	}
}

// bootAndExpect boots toplevel with hephc boot and fails t unless a
// console line contains line within timeout, and the console before it
// each of before. It returns how long that took.
func bootAndExpect(t *testing.T, toplevel, line string, timeout time.Duration, before ...string) time.Duration {
	t.Helper()
	requireQEMU(t)
	start := time.Now()
	code, stdout, stderr := hephcIn(t.TempDir(), "boot", "--timeout", timeout.String(), "--expect", line, toplevel)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("hephc boot --expect %q %s: exit %d after %v\n%s", line, toplevel, code, took.Round(time.Millisecond), stderr)
	}
	if !strings.Contains(stdout, line) {
		t.Errorf("the console copied to stdout lacks %q", line)
	}
	for _, l := range before {
		if !strings.Contains(stdout, l) {
			t.Errorf("%s: the console before %q lacks %q", toplevel, line, l)
		}
	}
	return took
}

// requireQEMU skips t when QEMU is missing, unless HEPHC_E2E=1 (as in CI),
// where it fails.
func requireQEMU(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if os.Getenv("HEPHC_E2E") != "" {
			t.Fatalf("HEPHC_E2E is set but QEMU is missing: %s", qemuHint)
		}
		t.Skipf("qemu-system-x86_64 not found; %s, or set HEPHC_E2E=1 to fail instead of skipping", qemuHint)
	}
}

const testInitMarker = "HEPHC-BOOT-TEST: init runs"

// testInit is /init of the test initramfs: it prints the marker and
// powers off, or with HEPHTEST=hang on the kernel command line, waits.
const testInit = `package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

func main() {
	fmt.Println("` + testInitMarker + `")
	if os.Getenv("HEPHTEST") == "hang" {
		for {
			time.Sleep(time.Hour)
		}
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART) // -no-reboot: QEMU exits
}
`

// TestBootE2E boots the pinned gokrazy kernel with a one-program
// initramfs in QEMU.
func TestBootE2E(t *testing.T) {
	requireQEMU(t)
	top := testToplevel(t)

	t.Run("expect", func(t *testing.T) {
		took := bootAndExpect(t, top, testInitMarker, 60*time.Second)
		t.Logf("boot to the marker under TCG: %v", took.Round(time.Millisecond))
	})
	t.Run("QEMU exits first", func(t *testing.T) {
		code, _, stderr := hephcIn(t.TempDir(), "boot", "--timeout", "60s", "--expect", "NEVER-PRINTED", top)
		if code != 1 || !strings.Contains(stderr, `QEMU exited before a console line contained "NEVER-PRINTED"`) || !strings.Contains(stderr, testInitMarker) {
			t.Errorf("got exit %d, stderr\n%s\nwant exit 1, QEMU exited, the console's tail", code, stderr)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		const timeout = 10 * time.Second
		start := time.Now()
		code, _, stderr := hephcIn(t.TempDir(), "boot", "--timeout", "10s", "--append", "HEPHTEST=hang", "--expect", "NEVER-PRINTED", top)
		took := time.Since(start)
		if code != 1 || !strings.Contains(stderr, `timed out after 10s; QEMU stopped before a console line contained "NEVER-PRINTED"`) {
			t.Errorf("got exit %d, stderr\n%s\nwant exit 1, timed out", code, stderr)
		}
		if took < timeout || took > timeout+10*time.Second {
			t.Errorf("took %v, want just over %v", took, timeout)
		}
		if qemuRunsWith(t, top) {
			t.Errorf("QEMU still runs")
		}
	})
}

// testToplevel makes a system toplevel: the kernel pinned in system.cue
// and an initramfs holding testInit.
func testToplevel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte("console=ttyS0 panic=-1\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(kernelModule(t), "vmlinuz"), filepath.Join(dir, "kernel")); err != nil {
		t.Fatal(err)
	}

	src := t.TempDir()
	for name, data := range map[string]string{"go.mod": "module hephctestinit\n\ngo 1.22\n", "main.go": testInit} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(src, "init")
	build := exec.Command("go", "build", "-trimpath", "-o", exe, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test init: %v\n%s", err, out)
	}
	init, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = writeNewc(f, []cpioRecord{
		{name: "dev", mode: 0o40755},
		{name: "dev/console", mode: 0o20600, rdev: [2]uint32{5, 1}},
		{name: "init", mode: 0o100755, data: init},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// kernelModule is the directory of the kernel module pinned in
// system.cue, downloaded into the module cache.
func kernelModule(t *testing.T) string {
	t.Helper()
	cue, err := os.ReadFile("../../system.cue")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`path:\s*"(github.com/gokrazy/kernel.amd64)"\s*version:\s*"([^"]+)"\s*sum:\s*"([^"]+)"`).FindSubmatch(cue)
	if m == nil {
		t.Fatal("system.cue pins no github.com/gokrazy/kernel.amd64 (path, version, sum in that order)")
	}
	cmd := exec.Command("go", "mod", "download", "-json", string(m[1])+"@"+string(m[2]))
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	out, err := cmd.Output()
	var mod struct{ Dir, Sum, Error string }
	json.Unmarshal(out, &mod)
	if err != nil || mod.Error != "" {
		t.Fatalf("go mod download %s@%s: %v %s", m[1], m[2], err, mod.Error)
	}
	if mod.Sum != string(m[3]) {
		t.Fatalf("%s@%s: the module cache has sum %s, system.cue pins %s", m[1], m[2], mod.Sum, m[3])
	}
	return mod.Dir
}

// qemuRunsWith reports whether a process's command line names dir.
func qemuRunsWith(t *testing.T, dir string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(dir)) {
			stat, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
			if s := string(stat); s != "" && !strings.HasPrefix(s[strings.LastIndex(s, ")")+1:], " Z") {
				return true
			}
		}
	}
	return false
}

// cpioRecord is one file of a newc cpio archive.
type cpioRecord struct {
	name string
	mode uint32 // type and permission bits, as in struct stat
	rdev [2]uint32
	data []byte
}

// writeNewc writes records as the kernel's initramfs format, cpio "newc",
// with zero uid, gid and mtime.
func writeNewc(w io.Writer, records []cpioRecord) error {
	var n int // bytes written: each header and each file's data start 4-aligned
	write := func(b []byte) error {
		pad := make([]byte, (4-(n+len(b))%4)%4)
		k, err := w.Write(b)
		if err == nil {
			_, err = w.Write(pad)
		}
		n += k + len(pad)
		return err
	}
	for i, r := range append(records, cpioRecord{name: "TRAILER!!!"}) {
		nlink := 1
		if r.mode&0o170000 == 0o40000 {
			nlink = 2
		}
		ino := i + 1
		if r.name == "TRAILER!!!" {
			ino = 0
		}
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, r.mode, 0, 0, nlink, 0, len(r.data), 0, 0, r.rdev[0], r.rdev[1], len(r.name)+1, 0)
		if err := write([]byte(hdr + r.name + "\x00")); err != nil {
			return err
		}
		if err := write(r.data); err != nil {
			return err
		}
	}
	return nil
}

// TestBootRealizedSystem follows the README: `hephc realize system.cue`
// links a result-NAME per image and records a generation; `hephc boot`
// asks which image, `hephc boot workstation` resolves to the linked
// toplevel, and `hephc boot --generation N workstation` boots it (the one
// real boot).
func TestBootRealizedSystem(t *testing.T) {
	storeDir, _, _ := systemStore(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	hephc := func(dir string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: os.Getenv, store: storeDir}
		code := run(e, append([]string{"--store", storeDir}, args...))
		return code, stdout.String(), stderr.String()
	}
	code, _, stderr := hephc(repo, "realize", "-o", filepath.Join(work, "result"), "system.cue")
	if code != 0 {
		t.Fatalf("hephc realize system.cue: exit %d\n%s", code, stderr)
	}
	m := regexp.MustCompile(`generation (\d+) of profile system`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("realize recorded no generation:\n%s", stderr)
	}
	for _, name := range []string{"workstation", "server"} {
		if _, err := os.Stat(filepath.Join(work, "result-"+name, "kernel")); err != nil {
			t.Errorf("realize linked no toplevel as result-%s: %v\n%s", name, err, stderr)
		}
	}
	if _, err := os.Lstat(filepath.Join(work, "result")); err == nil {
		t.Errorf("realize of two images linked ./result")
	}

	gen := []string{"boot", "--generation", m[1]}
	code, _, stderr = hephc(work, append(gen, "--dry-run")...)
	if want := "has 2 systems: name one (hephc boot server, hephc boot workstation)"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("boot with two images: exit %d, stderr %q; want exit 1 and %q", code, stderr, want)
	}
	top, err := filepath.EvalSymlinks(filepath.Join(work, "result-workstation"))
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := hephc(work, append(gen, "--dry-run", "workstation")...)
	if code != 0 || !strings.Contains(stdout, " -kernel "+top+"/kernel ") {
		t.Errorf("boot --dry-run workstation: exit %d, stdout %q; want the kernel of %s\n%s", code, stdout, top, stderr)
	}

	requireQEMU(t)
	code, stdout, stderr = hephc(work, append(gen, "--timeout", "180s", "--expect", "HEPH-SELFTEST OK", "workstation")...)
	if code != 0 || !strings.Contains(stdout, "HEPH-SELFTEST OK") {
		t.Errorf("hephc boot workstation: exit %d\n%s", code, stderr)
	}
}

// hephc boot --forward gives the guest a virtio NIC with the forwards and
// ip=dhcp (unless the cmdline configures ip= itself); a host side other
// than 127.0.0.1 is refused, as is --forward with --disk.
func TestBootForward(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	sys := fakeToplevel(t, dir, toplevelFiles)
	sys, _ = filepath.EvalSymlinks(sys)
	code, stdout, stderr := hephcIn(dir, "boot", "--dry-run", "--forward", "tcp:127.0.0.1:18080-:9100", "--forward", "udp:127.0.0.1:5000-:51820")
	want := "qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -kernel " + sys + "/kernel -initrd " + sys + "/initrd -append 'console=ttyS0 panic=-1 no_timer_check ip=dhcp' -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:18080-:9100,hostfwd=udp:127.0.0.1:5000-:51820\n"
	if code != 0 || stdout != want {
		t.Errorf("boot --dry-run --forward: exit %d, stdout\n%s\nwant\n%s\nstderr: %s", code, stdout, want, stderr)
	}
	code, stdout, _ = hephcIn(dir, "boot", "--dry-run", "--forward", "tcp:127.0.0.1:18080-:9100", "--append", "ip=10.0.2.15::10.0.2.2:255.255.255.0")
	if code != 0 || strings.Contains(stdout, "ip=dhcp") {
		t.Errorf("an ip= of the user's own: exit %d, %s", code, stdout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--forward", "tcp:0.0.0.0:18080-:9100"}, `the host address is "0.0.0.0": only 127.0.0.1 is allowed`},
		{[]string{"--forward", "tcp:127.0.0.1:1-:2", "--forward", "tcp:127.0.0.1:1-:3"}, "host port tcp 1 is forwarded twice"},
		{[]string{"--forward", "tcp:127.0.0.1:1-:2", "--disk", "x.img"}, "a disk image's command line is its boot loader's"},
	} {
		code, _, stderr := hephcIn(dir, append([]string{"boot", "--dry-run"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("boot %q: exit %d, stderr %s; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
