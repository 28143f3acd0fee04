package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHelperXSysVersion: the helper is built with go.mod's golang.org/x/sys.
func TestHelperXSysVersion(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*golang.org/x/sys (v\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod requires no golang.org/x/sys")
	}
	if string(m[1]) != xsysVersion {
		t.Fatalf("xsysVersion is %s, go.mod requires %s: update helper.go", xsysVersion, m[1])
	}
}

// TestHelperBuildsAndRuns builds the helper (as the first Run would, but
// waiting for it) and runs builds with it as their init, a builtin among
// them (ExePath is then this executable, not the helper).
func TestHelperBuildsAndRuns(t *testing.T) {
	requireNamespaces(t)
	if os.Getenv(InitEnv) == "self" {
		t.Skip(InitEnv + "=self")
	}
	if _, _, err := helperKey(); err != nil {
		t.Skip("no cache directory: ", err)
	}
	gotool, err := goTool()
	if err != nil {
		t.Skip("no go command: ", err)
	}
	// The helper is built offline, from the module cache: there when
	// hephc was built by go install or go run as this user.
	cmd := exec.Command(gotool, "env", "GOMODCACHE")
	cmd.Env = helperBuildEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	zip := filepath.Join(strings.TrimSpace(string(out)), "cache", "download", "golang.org", "x", "sys", "@v", xsysVersion+".zip")
	if _, err := os.Stat(zip); err != nil {
		skipOutsideCI(t, "golang.org/x/sys %s is not in this user's module cache, which the helper is built from (Run starts this executable instead): %v", xsysVersion, err)
	}
	exe := WaitInitHelper()
	if exe == "" {
		t.Fatalf("no helper: %v", helperErr)
	}
	if !trusted(exe) {
		t.Fatalf("%s is not trusted", exe)
	}
	if err := Run(t.Context(), &Spec{Builtin: "true"}); err != nil {
		t.Fatal(err)
	}
}

// TestHelperGoneFallsBack: a helper removed after it was found (a cleaned
// cache) makes Run start this executable as the init instead.
func TestHelperGoneFallsBack(t *testing.T) {
	requireNamespaces(t)
	exe := WaitInitHelper()
	if exe == "" {
		t.Skipf("no helper: %v", helperErr)
	}
	gone := exe + ".gone"
	helperReady.Store(&gone)
	defer helperReady.Store(&exe)
	if err := Run(t.Context(), &Spec{Builtin: "true"}); err != nil {
		t.Fatal(err)
	}
}

// TestHelperIsTheInit: with the helper, the init is the helper, a child
// of this process started without copying it (vfork, see initCmd), and a
// timeout kills the whole sandbox, the init included, before Run returns.
func TestHelperIsTheInit(t *testing.T) {
	requireNamespaces(t)
	helper := WaitInitHelper()
	if helper == "" {
		t.Skipf("no helper: %v", helperErr)
	}
	out := t.TempDir()
	token := fmt.Sprintf("helper-token-%d-%d", os.Getpid(), time.Now().UnixNano())
	errc := make(chan error, 1)
	go func() {
		errc <- Run(t.Context(), &Spec{
			Builtin: "hang",
			Args:    []string{"/out/pid", "child", token},
			Mounts:  []Mount{{Source: out, Target: "/out", Writable: true}},
			Timeout: 2 * time.Second,
		})
	}()
	parent := func(pid int) (int, string) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// pid (comm) state ppid ...: comm may hold spaces.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 2 {
			return 0, ""
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid))
		arg0, _, _ := bytes.Cut(cmd, []byte{0})
		return ppid, string(arg0)
	}
	var chain []int
	for start := time.Now(); time.Since(start) < 2*time.Second && chain == nil; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(out, "pid-grandchild")); err != nil {
			continue
		}
		for _, pid := range hostPids(token) {
			initPid, arg0 := parent(pid)
			if arg0 != initArg0 {
				continue
			}
			if self, _ := parent(initPid); self != os.Getpid() {
				t.Errorf("the init's parent is %d, want this process, %d", self, os.Getpid())
			}
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", initPid)); exe != helper {
				t.Errorf("the init runs %s, want the helper %s", exe, helper)
			}
			chain = []int{initPid}
			chain = append(chain, hostPids(token)...)
		}
	}
	if err := <-errc; !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if chain == nil {
		t.Fatal("found no build whose parent is the init")
	}
	for _, pid := range chain {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("kill(%d, 0) after Run returned: got %v, want ESRCH", pid, err)
		}
	}
}
