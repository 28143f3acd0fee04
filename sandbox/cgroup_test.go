package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// TestCgroupRemoved: a build's cgroup is gone once Run returns.
func TestCgroupRemoved(t *testing.T) {
	requireCgroup(t, "memory")
	h := cgroupHostOnce()
	err, log := runLimited(t, Limits{Memory: 64 << 20, Pids: 64}, nil, "true")
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
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
