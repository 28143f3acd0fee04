package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeCgroupFS lays out files under root: "path" → content.
func fakeCgroupFS(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindCgroups(t *testing.T) {
	root := t.TempDir()
	fakeCgroupFS(t, root, map[string]string{
		"v1/memory/job/a/memory.limit_in_bytes": "",
		"v1/pids/pids.max":                      "",
		"v2/user/app/cgroup.subtree_control":    "cpu memory pids\n",
		"v2/user/x/cgroup.subtree_control":      "cpu\n",
		"ns/docker/abc/cgroup.subtree_control":  "memory pids",
	})
	mountinfo := strings.Join([]string{
		"30 20 0:26 / " + root + "/v1/memory rw - cgroup cgroup rw,memory",
		"31 20 0:27 / " + root + "/v1/pids rw - cgroup cgroup rw,pids",
		"32 20 0:28 / " + root + "/v2 rw - cgroup2 cgroup2 rw",
		"",
	}, "\n")
	for _, tc := range []struct {
		name, cgroup string
		want         cgroupHost
	}{
		{"v1", "4:memory:/job/a\n8:pids:/\n0::/user/x\n", cgroupHost{memory: root + "/v1/memory/job/a", pids: root + "/v1/pids"}},
		{"v2 delegating", "0::/user/app\n", cgroupHost{v2: root + "/v2/user/app"}},
		{"v2 not delegating", "0::/user/x\n", cgroupHost{}},
		{"missing", "4:memory:/nowhere\n0::/nowhere\n", cgroupHost{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg := filepath.Join(t.TempDir(), "cgroup")
			mi := filepath.Join(t.TempDir(), "mountinfo")
			os.WriteFile(cg, []byte(tc.cgroup), 0o644)
			os.WriteFile(mi, []byte(mountinfo), 0o644)
			if got := findCgroups(cg, mi); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// A hierarchy mounted from below its root (a container's view).
	m := cgroupMounts([]byte("40 20 0:30 /docker/abc " + root + "/ns rw - cgroup2 cgroup2 rw\n"))
	if d, ok := m["cgroup2"].dir("/docker/abc"); !ok || d != root+"/ns" {
		t.Errorf("got %q, %v", d, ok)
	}
	if _, ok := m["cgroup2"].dir("/other"); ok {
		t.Error("a cgroup outside the mount was found in it")
	}
	// Outside this process's cgroup namespace.
	if d, ok := m["cgroup2"].dir("/../x"); ok {
		t.Errorf("a cgroup outside the namespace was found at %s", d)
	}
	if got := unescapeMountinfo(`/a\040b`); got != "/a b" {
		t.Errorf("unescape: got %q", got)
	}
}

func TestWarnings(t *testing.T) {
	withoutCgroups(t)
	ws := Warnings(DefaultLimits)
	if len(ws) != 2 || !strings.Contains(ws[0], "RLIMIT_DATA") || !strings.Contains(ws[1], "RLIMIT_NPROC") {
		t.Errorf("got %q", ws)
	}
	if ws := Warnings(Limits{}); len(ws) != 0 {
		t.Errorf("no limits: got %q", ws)
	}
}

// TestCgroupRemoved: a build's cgroup is gone once Run returns; with a
// WorkDir, once WaitTeardowns has (a slot's init keeps one for its
// builds).
func TestCgroupRemoved(t *testing.T) {
	requireCgroup(t, "memory")
	h := cgroupHostOnce()
	err, log := runLimited(t, Limits{Memory: 64 << 20, Pids: 64}, nil, "true")
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	WaitTeardowns()
	for _, d := range []string{h.v2, h.memory, h.pids} {
		if d == "" {
			continue
		}
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), fmt.Sprintf("hephc-build-%d-", os.Getpid())) {
				t.Errorf("%s/%s left behind", d, e.Name())
			}
		}
	}
}

// TestStartsInCgroup: the init and the build are in the build's cgroup
// from their start, and every thread of the caller is back in its own.
func TestStartsInCgroup(t *testing.T) {
	requireCgroup(t, "memory")
	requireCgroup(t, "pids")
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	// From the host: the processes in the build's cgroups while it runs.
	h := cgroupHostOnce()
	var parents []string
	for _, d := range []string{h.v2, h.memory, h.pids} {
		if d != "" {
			parents = append(parents, d)
		}
	}
	seen := make([]int, len(parents))
	stop, polled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(polled)
		for {
			for i, parent := range parents {
				dirs, _ := filepath.Glob(filepath.Join(parent, fmt.Sprintf("hephc-build-%d-*", os.Getpid())))
				for _, d := range dirs {
					b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
					seen[i] = max(seen[i], len(strings.Fields(string(b))))
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	res := runProbes(t, Spec{Limits: Limits{Memory: 256 << 20, Pids: 64}},
		"read=/proc/self/cgroup", "read=/proc/1/cgroup", "sleep=300ms")
	close(stop)
	<-polled
	for i, parent := range parents {
		// The init and the build.
		if seen[i] < 2 {
			t.Errorf("%s: at most %d processes seen in the build's cgroup, want the init and the build", parent, seen[i])
		}
	}
	// Inside: a cgroup namespace of their own, rooted at the build's
	// cgroup, so that no host path shows. A slot's init (keeper.go) is
	// not in the build's cgroup (its thread that started the build was),
	// but its parent: "/..", still no path.
	for _, op := range []string{"read=/proc/self/cgroup", "read=/proc/1/cgroup"} {
		got := res[op]
		if !strings.HasPrefix(got, "ok: ") {
			t.Fatalf("%s: %s", op, got)
		}
		for _, line := range strings.Split(strings.TrimSpace(got[4:]), "\n") {
			f := strings.SplitN(line, ":", 3)
			if len(f) == 3 && f[2] == "/.." && op == "read=/proc/1/cgroup" && os.Getenv(slotEnv) == "1" && f[1] != "" {
				continue
			}
			if len(f) != 3 || f[2] != "/" {
				t.Errorf("%s: %q, want the root of the build's own cgroup namespace", op, line)
			}
		}
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/cgroup")
	for _, p := range tasks {
		if b, err := os.ReadFile(p); err == nil && string(b) != string(before) {
			t.Errorf("%s:\n%s\nwant the caller's:\n%s", p, b, before)
		}
	}
}

// TestEnterThread: the thread that starts the init moves itself into the
// build's v1 cgroups and back.
func TestEnterThread(t *testing.T) {
	requireCgroup(t, "memory")
	requireCgroup(t, "pids")
	h := cgroupHostOnce()
	if h.v2 != "" {
		t.Skipf("cgroup v2 is delegated here: the init is cloned into its cgroup (TestStartsInCgroup), no thread moves")
	}
	cg, err := newCgroup(h, Limits{Memory: 256 << 20, Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer cg.remove()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self := func() string {
		b, _ := os.ReadFile("/proc/thread-self/cgroup")
		return string(b)
	}
	before := self()
	leave, entered, tainted := cg.enterThread()
	if !entered || tainted {
		t.Fatalf("entered %v, tainted %v", entered, tainted)
	}
	in := self()
	for _, d := range []string{cg.memory, cg.pids} {
		if !strings.Contains(in, "/"+filepath.Base(d)+"\n") {
			t.Errorf("the thread is not in %s:\n%s", d, in)
		}
	}
	if err := leave(); err != nil {
		t.Fatal(err)
	}
	if after := self(); after != before {
		t.Errorf("after leaving:\n%s\nwant:\n%s", after, before)
	}
}

// TestPidsLimitOne: a pids limit too small for the starting thread and
// the init together: the init is started outside the cgroup and moved in,
// and the limit still holds: the build cannot be started (as before the
// init was born in its cgroup).
func TestPidsLimitOne(t *testing.T) {
	requireCgroup(t, "pids")
	err, log := runLimited(t, Limits{Pids: 1}, nil, "true")
	var le *LimitError
	if !(errors.As(err, &le) && le.Limit == "pids") && !errors.Is(err, unix.EAGAIN) || strings.Contains(err.Error(), "starting init") {
		t.Errorf("got %v, want the build refused its process (the pids limit, EAGAIN)\n%s", err, log)
	}
}
