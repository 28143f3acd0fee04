package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slotSpec returns a spec whose builds run in the keeper of the slot
// dir, after checking that this machine gives them one.
func slotSpec(t *testing.T, dir string) Spec {
	t.Helper()
	s := Spec{WorkDir: dir}
	if !keeperWanted(&s) {
		skipOutsideCI(t, "no slot init here (kernel without thread pidfds, or %s=off)", KeeperEnv)
	}
	return s
}

func init() {
	// leave starts a process, which starts another, both sleeping for
	// good, and exits once they have begun.
	RegisterBuiltin("leave", func(args, env []string, stdout, stderr io.Writer) error {
		path, argv := BuiltinArgv("hang", "/tmp/left", "child", "")
		if _, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env}); err != nil {
			return err
		}
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
			if _, err := os.Stat("/tmp/left-grandchild"); err == nil {
				return nil
			}
		}
		return errors.New("the processes left did not begin")
	})
}

// idleKeeper returns the keeper between builds of the slot dir.
func idleKeeper(dir string) *keeper {
	keepers.mu.Lock()
	defer keepers.mu.Unlock()
	return keepers.idle[dir]
}

// TestKeeperBuildsAlike runs builds one after another in one slot's init
// and checks that each sees what a build under an init of its own sees,
// and nothing of the builds before it: their files in /tmp and
// /dev/shm, their processes, their SysV IPC; nor the keeper's root, the
// host's. Each gets the same pid.
func TestKeeperBuildsAlike(t *testing.T) {
	work := t.TempDir()
	s := slotSpec(t, work)
	first := runProbes(t, s, "write=/tmp/mark", "write=/dev/shm/mark", "run=leave", "pids", "shm", "readlink=/proc/self")
	t.Logf("first build: %q", first)
	wantOK(t, first, "run=leave", "")
	wantOK(t, first, "readlink=/proc/self", strconv.Itoa(buildPid))
	if p := first["pids"]; !strings.HasPrefix(p, "ok: 1 "+strconv.Itoa(buildPid)+" ") {
		t.Errorf("pids: got %q, want the init, the build and what it left", p)
	}
	k := idleKeeper(work)
	if k == nil {
		t.Fatal("no keeper is kept for the slot after its first build")
	}
	for i := 0; i < 2; i++ {
		res := runProbes(t, s, "stat=/tmp/mark", "stat=/dev/shm/mark", "pids", "shm", "readlink=/proc/self", "hostname", "ids",
			"stat=/proc/1/root/etc", "readlink=/proc/1/cwd", "stat=/proc/1/fd/0")
		t.Logf("build %d: %q", i+2, res)
		wantErr(t, res, "stat=/tmp/mark", "no such file")
		wantErr(t, res, "stat=/dev/shm/mark", "no such file")
		wantOK(t, res, "pids", "1 "+strconv.Itoa(buildPid))
		wantOK(t, res, "shm", "0")
		wantOK(t, res, "readlink=/proc/self", strconv.Itoa(buildPid))
		wantOK(t, res, "hostname", "localhost")
		wantOK(t, res, "ids", "1000 1000 1000 1000")
		// The keeper's root is the host's: the build may not reach it.
		wantErr(t, res, "stat=/proc/1/root/etc", "permission denied")
		wantErr(t, res, "readlink=/proc/1/cwd", "permission denied")
		wantErr(t, res, "stat=/proc/1/fd/0", "permission denied")
	}
	if idleKeeper(work) != k {
		t.Error("the later builds ran in another keeper")
	}
	WaitTeardowns()
	if idleKeeper(work) != nil {
		t.Error("WaitTeardowns left the keeper")
	}
	select {
	case <-k.exited:
	default:
		t.Error("WaitTeardowns returned before the keeper exited")
	}
}

// TestKeeperReplaced checks when a slot's builds get another keeper: one
// with other limits (rlimits are a process's), and after one was killed
// (a timeout) or retired (a socket left in TIME_WAIT).
func TestKeeperReplaced(t *testing.T) {
	work := t.TempDir()
	s := slotSpec(t, work)
	runProbes(t, s, "ids")
	k1 := idleKeeper(work)
	s.Limits = Limits{Disk: 64 << 20}
	runProbes(t, s, "ids")
	k2 := idleKeeper(work)
	if k2 == nil || k2 == k1 {
		t.Fatal("a build with other limits ran in the slot's keeper")
	}
	<-k1.exited
	runProbes(t, s, "timewait")
	if k3 := idleKeeper(work); k3 != nil {
		t.Error("a keeper whose network namespace holds a TIME_WAIT connection was kept")
	}
	<-k2.exited
	s.Timeout = 100 * time.Millisecond
	s.Builtin, s.Args = "probe", []string{"sleep=10s"}
	err := runT(t, context.Background(), &s)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want a timeout", err)
	}
	if idleKeeper(work) != nil {
		t.Error("the keeper of a build that timed out was kept")
	}
	s.Timeout = 0
	wantOK(t, runProbes(t, s, "readlink=/proc/self"), "readlink=/proc/self", strconv.Itoa(buildPid))
	WaitTeardowns()
}

// slotEnv, set to "1" by TestKeeperSuite, runs the package's tests'
// builds in slots' inits: each test's in a slot of its own.
const slotEnv = "HEPHC_SANDBOX_TEST_SLOT"

// runT is Run for tests: under slotEnv, a build a keeper may run runs in
// the keeper of the test's slot.
func runT(t testing.TB, ctx context.Context, s *Spec) error {
	if os.Getenv(slotEnv) == "1" && s.WorkDir == "" {
		s.WorkDir = slotDir(t)
	}
	return Run(ctx, s)
}

var slotDirs sync.Map // test name → its slot's WorkDir

func slotDir(t testing.TB) string {
	if d, ok := slotDirs.Load(t.Name()); ok {
		return d.(string)
	}
	d := t.TempDir()
	if prev, loaded := slotDirs.LoadOrStore(t.Name(), d); loaded {
		return prev.(string)
	}
	t.Cleanup(func() {
		slotDirs.Delete(t.Name())
		WaitTeardowns()
	})
	return d
}

// TestKeeperSuite runs this package's other tests again with their
// builds in slots' inits (slotEnv): whatever a build cannot do under an
// init of its own, it cannot do there either. (Not the guest's: no slot
// init is used on cgroup v2 with limits, nor before Linux 6.9.)
func TestKeeperSuite(t *testing.T) {
	slotSpec(t, t.TempDir())
	cmd := exec.Command(os.Args[0], "-test.run", "^Test", "-test.skip", "^(TestKeeperSuite|TestCgroupV2InAGuest)$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), slotEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests with builds in slots' inits: %v\n%s", err, out)
	}
	if n := bytes.Count(out, []byte("--- PASS: TestIsolation ")); n != 1 {
		t.Fatalf("TestIsolation passed %d times, want 1:\n%s", n, out)
	}
}

// TestKeeperLimitsPerBuild: a slot's builds share its keeper's cgroup,
// and each is told of what its own processes hit, not of what an
// earlier build's did.
func TestKeeperLimitsPerBuild(t *testing.T) {
	requireCgroup(t, "pids")
	t.Setenv(slotEnv, "1") // runLimited's builds go to the test's slot
	lim := Limits{Pids: 64}
	err, log := runLimited(t, lim, nil, "threads", "1000")
	wantLimit(t, err, log, "pids", "64 processes and threads")
	// A build that fails of itself, after one that hit the limit: its
	// failure is its own.
	err, log = runLimited(t, lim, nil, "probe", "exit=3")
	var le *LimitError
	var ee *ExitError
	if errors.As(err, &le) || !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("a build exiting 3 after one past the pids limit: got %v, want exit status 3\n%s", err, log)
	}
	err, log = runLimited(t, lim, nil, "threads", "1000")
	wantLimit(t, err, log, "pids", "64 processes and threads")
}
