package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// programEnv, set in a Program-mode run of the test executable itself, makes
// TestMain print its arguments and exit instead of running tests.
const programEnv = "SANDBOX_TEST_PROGRAM"

func TestMain(m *testing.M) {
	Init()
	if os.Getenv(programEnv) == "1" {
		fmt.Printf("program args=%q uid=%d\n", os.Args[1:], os.Getuid())
		os.Exit(0)
	}
	if place := os.Getenv(guestEnv); place != "" {
		guestMain(m, place) // a QEMU guest's (cgroupv2_guest_test.go)
	}
	os.Exit(m.Run())
}

func init() {
	RegisterBuiltin("true", func(args, env []string, stdout, stderr io.Writer) error { return nil })
	RegisterBuiltin("probe", probe)
	RegisterBuiltin("hang", hang)
	RegisterBuiltin("orphan", func(args, env []string, stdout, stderr io.Writer) error {
		// Start a child and exit without waiting for it: it becomes the
		// init's orphan, and a zombie unless the init reaps it.
		path, argv := BuiltinArgv("true")
		_, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env})
		return err
	})
	RegisterBuiltin("linger", func(args, env []string, stdout, stderr io.Writer) error {
		// Leave a child writing to args[0] as fast as it can, and exit
		// once it has begun.
		path, argv := BuiltinArgv("scribble", args...)
		if _, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env}); err != nil {
			return err
		}
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
			if fi, err := os.Stat(args[0]); err == nil && fi.Size() > 0 {
				return nil
			}
		}
		return errors.New("the child wrote nothing")
	})
	RegisterBuiltin("scribble", func(args, env []string, stdout, stderr io.Writer) error {
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		for start := time.Now(); time.Since(start) < 10*time.Second; {
			f.Write([]byte("x"))
		}
		return f.Close()
	})
}

// probe tries each of its args, "op" or "op=arg", inside the sandbox and
// prints one line "op=arg\t<quoted result>" for each, the result being
// "ok", "ok: value" or "error: ...".
func probe(args, env []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		op, arg, _ := strings.Cut(a, "=")
		val, err := probeOne(op, arg, env)
		res := "ok"
		switch {
		case err != nil:
			res = "error: " + err.Error()
		case val != "":
			res = "ok: " + val
		}
		fmt.Fprintf(stdout, "%s\t%q\n", a, res)
	}
	return nil
}

func probeOne(op, arg string, env []string) (string, error) {
	switch op {
	case "dial":
		c, err := net.DialTimeout("tcp", arg, 2*time.Second)
		if err != nil {
			return "", err
		}
		return "", c.Close()
	case "loopback", "timewait":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return "", err
		}
		if op == "loopback" {
			return "", c.Close()
		}
		// A TCP connection this side closes first, left in TIME_WAIT.
		s, err := l.Accept()
		if err != nil {
			return "", err
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
		return "", s.Close()
	case "sleep":
		d, err := time.ParseDuration(arg)
		time.Sleep(d)
		return "", err
	case "read":
		b, err := os.ReadFile(arg)
		return strings.TrimSpace(string(b)), err
	case "head":
		f, err := os.Open(arg)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b := make([]byte, 4)
		_, err = io.ReadFull(f, b)
		return fmt.Sprintf("%x", b), err
	case "stat":
		_, err := os.Lstat(arg)
		return "", err
	case "write":
		return "", os.WriteFile(arg, []byte("written inside\n"), 0o644)
	case "remount-rw":
		return "", unix.Mount("", arg, "", unix.MS_REMOUNT|unix.MS_BIND, "")
	case "pids":
		ents, err := os.ReadDir("/proc")
		var pids []string
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, e.Name())
			}
		}
		return strings.Join(pids, " "), err
	case "zombies":
		time.Sleep(100 * time.Millisecond) // let the orphans exit
		ents, err := os.ReadDir("/proc")
		n := 0
		for _, e := range ents {
			b, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
			if i := bytes.LastIndexByte(b, ')'); i > 0 && bytes.HasPrefix(b[i:], []byte(") Z")) {
				n++
			}
		}
		return strconv.Itoa(n), err
	case "run":
		path, argv := BuiltinArgv(arg)
		cmd := &exec.Cmd{Path: path, Args: argv, Env: env}
		return "", cmd.Run()
	case "ids":
		return fmt.Sprintf("%d %d %d %d", os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid()), nil
	case "hostname":
		return os.Hostname()
	case "env":
		return strings.Join(os.Environ(), " "), nil
	case "cwd":
		return os.Getwd()
	case "status":
		b, err := os.ReadFile("/proc/self/status")
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") {
				lines = append(lines, strings.ReplaceAll(l, "\t", ""))
			}
		}
		return strings.Join(lines, " "), err
	case "ptrace":
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pid, _ := strconv.Atoi(arg)
		if err := unix.PtraceAttach(pid); err != nil {
			return "", err
		}
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, unix.WALL, nil)
		return "", unix.PtraceDetach(pid)
	case "readlink":
		return os.Readlink(arg)
	case "exit":
		n, _ := strconv.Atoi(arg)
		os.Exit(n)
	case "signal-init":
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1} {
			if err := syscall.Kill(1, sig); err != nil {
				return "", err
			}
		}
		time.Sleep(50 * time.Millisecond) // time enough to die of it
		return "", nil
	case "kill":
		return "", syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	if val, err, ok := probeMore(op, arg, env); ok {
		return val, err
	}
	return "", fmt.Errorf("unknown probe %q", op)
}

// hang writes its pid to the file args[0]-<args[1]>, starts a grandchild
// "hang" (unless args[1] is "grandchild") and sleeps forever.
func hang(args, env []string, stdout, stderr io.Writer) error {
	if args[1] != "grandchild" {
		path, argv := BuiltinArgv("hang", args[0], "grandchild", args[2])
		if _, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env}); err != nil {
			return err
		}
	}
	err := os.WriteFile(args[0]+"-"+args[1], []byte(strconv.Itoa(os.Getpid())), 0o644)
	if err != nil {
		return err
	}
	for {
		time.Sleep(time.Hour)
	}
}

var (
	nsOnce sync.Once
	nsErr  error
)

// requireNamespaces fails the test, with a clear message, if this machine
// cannot create the namespaces a sandbox needs.
func requireNamespaces(t testing.TB) {
	t.Helper()
	nsOnce.Do(func() {
		var out bytes.Buffer
		nsErr = Run(context.Background(), &Spec{Builtin: "true", Stdout: &out, Stderr: &out})
		if nsErr != nil && out.Len() > 0 {
			nsErr = fmt.Errorf("%w\n%s", nsErr, out.Bytes())
		}
	})
	if nsErr != nil {
		t.Fatalf("cannot run a sandbox (are user namespaces enabled? CI runs as root, where they work): %v", nsErr)
	}
}

// skipOutsideCI skips the test for a reason this machine gives, or fails
// it in CI (HEPHC_E2E=1), whose machine must give what it needs.
func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("HEPHC_E2E") == "1" {
		t.Fatalf("HEPHC_E2E is set: "+format, args...)
	}
	t.Skipf(format, args...)
}

// runProbes runs the probe builtin with ops in a sandbox made from s, and
// returns each op's result.
func runProbes(t *testing.T, s Spec, ops ...string) map[string]string {
	t.Helper()
	requireNamespaces(t)
	var out, errOut bytes.Buffer
	s.Builtin = "probe"
	s.Args = ops
	s.Stdout, s.Stderr = &out, &errOut
	if err := runT(t, context.Background(), &s); err != nil {
		t.Fatalf("Run: %v\nstdout:\n%s\nstderr:\n%s", err, out.Bytes(), errOut.Bytes())
	}
	res := map[string]string{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		op, q, ok := strings.Cut(sc.Text(), "\t")
		r, err := strconv.Unquote(q)
		if !ok || err != nil {
			t.Fatalf("probe printed %q", sc.Text())
		}
		res[op] = r
	}
	for _, op := range ops {
		if _, ok := res[op]; !ok {
			t.Fatalf("probe %s printed nothing; stdout:\n%s\nstderr:\n%s", op, out.Bytes(), errOut.Bytes())
		}
	}
	return res
}

func wantOK(t *testing.T, res map[string]string, op, want string) {
	t.Helper()
	got := res[op]
	if want == "" && got != "ok" || want != "" && got != "ok: "+want {
		t.Errorf("%s: got %q, want ok %s", op, got, want)
	}
}

func wantErr(t *testing.T, res map[string]string, op, want string) {
	t.Helper()
	if got := res[op]; !strings.HasPrefix(got, "error: ") || !strings.Contains(got, want) {
		t.Errorf("%s: got %q, want an error containing %q", op, got, want)
	}
}

// listen opens a TCP listener on the host's loopback, accepting forever.
func listen(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().String()
}

func TestIsolation(t *testing.T) {
	in := t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "input"), []byte("input data"), 0o644); err != nil {
		t.Fatal(err)
	}
	inFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(inFile, []byte("file data"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	addr := listen(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	res := runProbes(t, Spec{
		Env:      []string{"A=1", "B=two words"},
		Hostname: "heph-builder",
		Mounts: []Mount{
			{Source: in, Target: "/heph/store/aaa-in"},
			{Source: inFile, Target: "/heph/store/bbb-file"},
			{Source: out, Target: "/heph/store/ccc-out", Writable: true},
		},
	},
		"dial="+addr, "loopback",
		"read=/etc/hostname", "stat=/root", "stat=/work", "stat="+exe, "stat="+in,
		"read=/heph/store/aaa-in/input", "read=/heph/store/bbb-file",
		"write=/heph/store/aaa-in/new", "write=/heph/store/aaa-in/input", "write=/heph/store/bbb-file",
		"write=/foo", "write=/etc/passwd", "write=/dev/foo", "write=/proc/foo",
		"write=/heph/store/ccc-out/result",
		"write=/build/scratch", "write=/tmp/scratch", "write=/dev/shm/scratch", "write=/dev/null",
		"head=/dev/zero", "head=/dev/urandom",
		"remount-rw=/heph/store/aaa-in", "remount-rw=/heph/store/bbb-file", "remount-rw=/",
		"pids", "ids", "hostname", "env", "cwd", "status",
		"read=/etc/passwd", "read=/etc/group", "read=/etc/hosts",
		"stat=/dev/fd", "stat=/dev/stdout", "stat=/dev/tty", "stat=/sys",
		"readlink=/proc/1/exe", "readlink=/proc/1/root", "ptrace=1",
	)
	t.Logf("results: %q", res)

	wantErr(t, res, "dial="+addr, "connection refused")
	wantOK(t, res, "loopback", "")

	wantErr(t, res, "read=/etc/hostname", "no such file")
	wantErr(t, res, "stat=/root", "no such file")
	wantErr(t, res, "stat=/work", "no such file")
	wantErr(t, res, "stat="+exe, "no such file")
	wantErr(t, res, "stat="+in, "no such file")
	wantErr(t, res, "stat=/dev/tty", "no such file")
	wantErr(t, res, "stat=/sys", "no such file")

	wantOK(t, res, "read=/heph/store/aaa-in/input", "input data")
	wantOK(t, res, "read=/heph/store/bbb-file", "file data")
	for _, op := range []string{
		"write=/heph/store/aaa-in/new", "write=/heph/store/aaa-in/input", "write=/heph/store/bbb-file",
		"write=/foo", "write=/etc/passwd", "write=/dev/foo",
	} {
		wantErr(t, res, op, "read-only file system")
	}
	wantErr(t, res, "write=/proc/foo", "")
	for _, op := range []string{
		"write=/heph/store/ccc-out/result", "write=/build/scratch", "write=/tmp/scratch",
		"write=/dev/shm/scratch", "write=/dev/null",
	} {
		wantOK(t, res, op, "")
	}
	if b, err := os.ReadFile(filepath.Join(out, "result")); err != nil || string(b) != "written inside\n" {
		t.Errorf("file written to the writable mount: got %q, %v; want %q", b, err, "written inside\n")
	}
	if b, _ := os.ReadFile(filepath.Join(in, "input")); string(b) != "input data" {
		t.Errorf("read-only input changed: %q", b)
	}
	wantOK(t, res, "head=/dev/zero", "00000000")
	if !strings.HasPrefix(res["head=/dev/urandom"], "ok: ") {
		t.Errorf("head=/dev/urandom: got %q, want ok", res["head=/dev/urandom"])
	}
	for _, op := range []string{"remount-rw=/heph/store/aaa-in", "remount-rw=/heph/store/bbb-file", "remount-rw=/"} {
		wantErr(t, res, op, "operation not permitted")
	}

	pids := strings.Fields(strings.TrimPrefix(res["pids"], "ok: "))
	if len(pids) == 0 || len(pids) >= 5 {
		t.Errorf("pids in the sandbox: got %q, want 1 to 4", pids)
	}
	for _, p := range pids {
		if p == strconv.Itoa(os.Getpid()) {
			t.Errorf("the test's own pid %s is visible in the sandbox", p)
		}
	}
	wantOK(t, res, "ids", "1000 1000 1000 1000")
	wantOK(t, res, "hostname", "heph-builder")
	wantOK(t, res, "env", "A=1 B=two words")
	wantOK(t, res, "cwd", "/build")
	wantOK(t, res, "status",
		"CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 "+
			"CapBnd:0000000000000000 CapAmb:0000000000000000 NoNewPrivs:1")
	if got := res["read=/etc/passwd"]; !strings.Contains(got, "\nbuilder:x:1000:1000:builder:/build:") {
		t.Errorf("/etc/passwd: got %q, want a builder line", got)
	}
	if got := res["read=/etc/group"]; !strings.Contains(got, "\nbuilder:x:1000:") {
		t.Errorf("/etc/group: got %q, want a builder line", got)
	}
	if got := res["read=/etc/hosts"]; !strings.Contains(got, "127.0.0.1\tlocalhost heph-builder") {
		t.Errorf("/etc/hosts: got %q, want localhost and the host name", got)
	}
	// The init keeps capabilities in its other threads: the build must not
	// be able to reach into it.
	wantErr(t, res, "readlink=/proc/1/exe", "permission denied")
	wantErr(t, res, "readlink=/proc/1/root", "permission denied")
	wantErr(t, res, "ptrace=1", "operation not permitted")
	wantOK(t, res, "stat=/dev/fd", "")
	wantOK(t, res, "stat=/dev/stdout", "")
}

func TestNetwork(t *testing.T) {
	addr := listen(t)
	ops := []string{"dial=" + addr}
	for _, p := range []string{"/etc/resolv.conf", "/etc/ssl/certs"} {
		if _, err := os.Stat(p); err == nil {
			ops = append(ops, "stat="+p)
		}
	}
	res := runProbes(t, Spec{Network: true}, ops...)
	for _, op := range ops {
		wantOK(t, res, op, "")
	}
}

func TestDefaults(t *testing.T) {
	res := runProbes(t, Spec{}, "hostname", "env", "cwd", "write=/build/x")
	wantOK(t, res, "hostname", "localhost")
	wantOK(t, res, "env", "")
	wantOK(t, res, "cwd", "/build")
	wantOK(t, res, "write=/build/x", "")
}

func TestWorkDirMount(t *testing.T) {
	dir := t.TempDir()
	res := runProbes(t, Spec{
		Dir:    "/src",
		Mounts: []Mount{{Source: dir, Target: "/src", Writable: true}},
	}, "cwd", "write=here")
	wantOK(t, res, "cwd", "/src")
	wantOK(t, res, "write=here", "")
	if _, err := os.Stat(filepath.Join(dir, "here")); err != nil {
		t.Error(err)
	}
}

func TestMountOnTmp(t *testing.T) {
	dir := t.TempDir()
	res := runProbes(t, Spec{Mounts: []Mount{{Source: dir, Target: "/tmp", Writable: true}}}, "write=/tmp/x")
	wantOK(t, res, "write=/tmp/x", "")
	if _, err := os.Stat(filepath.Join(dir, "x")); err != nil {
		t.Error(err)
	}
}

func TestReapsOrphans(t *testing.T) {
	res := runProbes(t, Spec{}, "run=orphan", "run=orphan", "zombies")
	wantOK(t, res, "run=orphan", "")
	wantOK(t, res, "zombies", "0")
}

// TestNothingOutlivesTheBuild: a process the build left running is gone
// when Run returns, though with a WorkDir the init's own exit is waited
// for only later (releaseLater): nothing writes to a writable directory
// once the caller may take what is in it.
func TestNothingOutlivesTheBuild(t *testing.T) {
	requireNamespaces(t)
	tmp := t.TempDir()
	for _, d := range []string{"u/out", "w"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(tmp, "u/out/scribbled")
	// A file, as realize gives: Run waits for the init's exit when
	// goroutines copy the output (outputsAreFiles).
	log, err := os.Create(filepath.Join(tmp, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for i := range 3 {
		err := runT(t, context.Background(), &Spec{Builtin: "linger", Args: []string{"/out/scribbled"}, WorkDir: filepath.Join(tmp, "w"),
			Stdout: log, Stderr: log, Mounts: []Mount{{Source: filepath.Join(tmp, "u/out"), Target: "/out", Writable: true}}})
		if err != nil {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("Run: %v\n%s", err, b)
		}
		before, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		after, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if after.Size() != before.Size() {
			t.Fatalf("build %d: its output grew from %d to %d bytes after Run returned", i, before.Size(), after.Size())
		}
	}
	WaitTeardowns()
	if ents, err := os.ReadDir(filepath.Join(tmp, "w/0")); err != nil || len(ents) != 0 {
		t.Errorf("work directory after WaitTeardowns: %v left, %v", ents, err)
	}
	// What overlayfs left was set aside, then removed.
	if ents, err := os.ReadDir(filepath.Join(tmp, "w/.aside")); err != nil || len(ents) != 0 {
		t.Errorf("set aside after WaitTeardowns: %v left, %v", ents, err)
	}
}

func TestSignalInit(t *testing.T) {
	res := runProbes(t, Spec{}, "signal-init", "pids")
	// As an ordinary user the build may signal its init (the same uid),
	// which ignores the signals; when the caller is root they are
	// different users. Either way the sandbox lives on to run "pids".
	if got := res["signal-init"]; got != "ok" && !strings.Contains(got, "operation not permitted") {
		t.Errorf("signal-init: got %q, want ok or not permitted", got)
	}
}

func TestExitCode(t *testing.T) {
	requireNamespaces(t)
	err := runT(t, context.Background(), &Spec{Builtin: "probe", Args: []string{"exit=3"}})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Signal != "" {
		t.Fatalf("got %v, want *ExitError with Code 3", err)
	}
	if got, want := err.Error(), "sandbox: build exited with status 3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestBuiltinError(t *testing.T) {
	requireNamespaces(t)
	var stderr bytes.Buffer
	err := runT(t, context.Background(), &Spec{Builtin: "hang", Stderr: &stderr}) // no args: panics
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code == 0 {
		t.Fatalf("got %v, want *ExitError", err)
	}
	if !strings.Contains(stderr.String(), "index out of range") {
		t.Errorf("stderr: got %q, want the panic", stderr.String())
	}
}

func TestSignal(t *testing.T) {
	requireNamespaces(t)
	err := runT(t, context.Background(), &Spec{Builtin: "probe", Args: []string{"kill"}})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Signal != "SIGKILL" || ee.Code != 128+9 {
		t.Fatalf("got %#v, want *ExitError with SIGKILL", err)
	}
}

func TestMissingProgram(t *testing.T) {
	requireNamespaces(t)
	err := runT(t, context.Background(), &Spec{Program: "/no/such/program"})
	if err == nil || !errors.Is(err, fs.ErrNotExist) ||
		err.Error() != "sandbox: starting /no/such/program: no such file or directory" {
		t.Fatalf("got %v, want a clear not-exist error", err)
	}
}

func TestMissingMountSource(t *testing.T) {
	requireNamespaces(t)
	src := filepath.Join(t.TempDir(), "missing")
	err := runT(t, context.Background(), &Spec{Builtin: "true", Mounts: []Mount{{Source: src, Target: "/heph/store/x"}}})
	want := "sandbox: bind-mounting " + src + " on /heph/store/x: no such file or directory"
	if err == nil || err.Error() != want || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestMountUnderSymlink(t *testing.T) {
	requireNamespaces(t)
	// An input holding a symbolic link to a host directory must not lead
	// the init to make a mount point outside the sandbox.
	in := t.TempDir()
	host := t.TempDir()
	if err := os.Symlink(host, filepath.Join(in, "link")); err != nil {
		t.Fatal(err)
	}
	err := runT(t, context.Background(), &Spec{Builtin: "true", Mounts: []Mount{
		{Source: in, Target: "/in"},
		{Source: t.TempDir(), Target: "/in/link/x"},
	}})
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "/in/link is a symbolic link") {
		t.Errorf("got %v, want a symbolic link error", err)
	}
	if ents, _ := os.ReadDir(host); len(ents) != 0 {
		t.Errorf("the init created %v on the host", ents[0].Name())
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{}, "sandbox: spec has neither Program nor Builtin"},
		{Spec{Program: "/bin/x", Builtin: "true"}, "sandbox: spec has both Program and Builtin"},
		{Spec{Program: "bin/x"}, `sandbox: program "bin/x" is not an absolute path`},
		{Spec{Builtin: "nope"}, `sandbox: no builtin "nope" registered in this executable`},
		{Spec{Builtin: "true", Dir: "/a/../b"}, `sandbox: working directory "/a/../b" is not a clean absolute path`},
		{Spec{Builtin: "true", Env: []string{"X"}}, `sandbox: environment entry "X" is not KEY=VALUE`},
		{Spec{Builtin: "true", Mounts: []Mount{{Source: "/", Target: "/"}}}, "sandbox: mount target / is reserved"},
		{Spec{Builtin: "true", Mounts: []Mount{{Source: "/", Target: "x"}}}, `sandbox: mount target "x" is not a clean absolute path`},
		{Spec{Builtin: "true", Mounts: []Mount{{Source: "/", Target: "/dev/sda"}}}, "sandbox: mount target /dev/sda is reserved"},
		{Spec{Builtin: "true", Mounts: []Mount{{Source: "/", Target: ""}}}, `sandbox: mount target "" is not a clean absolute path`},
	} {
		err := runT(t, context.Background(), &tc.spec)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Run(%+v): got %v, want %q", tc.spec, err, tc.want)
		}
	}
}

// hostPids returns the host pids of the processes whose command line holds
// token.
func hostPids(token string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if bytes.Contains(b, []byte(token)) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

func TestTimeout(t *testing.T) {
	requireNamespaces(t)
	out := t.TempDir()
	token := fmt.Sprintf("hang-token-%d-%d", os.Getpid(), time.Now().UnixNano())
	const timeout = time.Second
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		errc <- runT(t, context.Background(), &Spec{
			Builtin: "hang",
			Args:    []string{"/out/pid", "child", token},
			Mounts:  []Mount{{Source: out, Target: "/out", Writable: true}},
			Timeout: timeout,
		})
	}()
	// Wait for both processes to start and find them on the host.
	var pids []int
	for time.Since(start) < timeout {
		_, err1 := os.Stat(filepath.Join(out, "pid-child"))
		_, err2 := os.Stat(filepath.Join(out, "pid-grandchild"))
		if err1 == nil && err2 == nil {
			pids = hostPids(token)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := <-errc
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if elapsed > timeout+2*time.Second {
		t.Errorf("Run returned after %v, want about %v", elapsed, timeout)
	}
	if len(pids) != 2 {
		t.Fatalf("found host pids %v of the hanging builtin and its grandchild, want 2", pids)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("kill(%d, 0) after the timeout: got %v, want ESRCH", pid, err)
		}
	}
}

func TestCancel(t *testing.T) {
	requireNamespaces(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	out := t.TempDir()
	err := runT(t, ctx, &Spec{
		Builtin: "hang",
		Args:    []string{"/out/pid", "child", "cancel"},
		Mounts:  []Mount{{Source: out, Target: "/out", Writable: true}},
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}

// TestProgram runs the test executable itself as a plain Program, with the
// libraries it needs mounted by hand.
func TestProgram(t *testing.T) {
	requireNamespaces(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mounts := []Mount{{Source: exe, Target: "/bin/prog"}}
	libs, err := exeLibs()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		mounts = append(mounts, Mount{Source: l, Target: l})
	}
	var out bytes.Buffer
	err = runT(t, context.Background(), &Spec{
		Program: "/bin/prog",
		Args:    []string{"first arg", "second"},
		Env:     []string{programEnv + "=1"},
		Mounts:  mounts,
		Stdout:  &out,
		Stderr:  &out,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.Bytes())
	}
	if got, want := out.String(), "program args=[\"first arg\" \"second\"] uid=1000\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestProgramWithoutLibs(t *testing.T) {
	requireNamespaces(t)
	libs, err := exeLibs()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) == 0 {
		t.Skip("the test executable is statically linked")
	}
	exe, _ := os.Executable()
	err = runT(t, context.Background(), &Spec{Program: "/bin/prog", Mounts: []Mount{{Source: exe, Target: "/bin/prog"}}})
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "interpreter missing") {
		t.Errorf("got %v, want a hint about a missing interpreter", err)
	}
}

func TestELFDeps(t *testing.T) {
	libs, err := exeLibs()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("libraries: %v", libs)
	for _, l := range libs {
		if _, err := os.Stat(l); err != nil {
			t.Error(err)
		}
	}
	// A static executable needs nothing.
	static := filepath.Join(t.TempDir(), "static")
	cmd := exec.Command("go", "build", "-o", static, "./testdata/static")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot build a static executable: %v\n%s", err, out)
	}
	libs, err = elfDeps(static, libDirs)
	if err != nil || len(libs) != 0 {
		t.Errorf("elfDeps(static): got %v, %v; want nothing", libs, err)
	}
}

func BenchmarkRun(b *testing.B) {
	requireNamespaces(b)
	times := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if err := Run(context.Background(), &Spec{Builtin: "true"}); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
}
