package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// This file gives each build a cgroup of its own, below the caller's, to
// limit its memory and number of processes: cgroup v2 where the caller's
// cgroup delegates the memory and pids controllers to its children or
// can be made to (claimV2), else the v1 memory and pids hierarchies where
// they are mounted and writable.

// cgroupHost is what this machine offers: where builds' cgroups go.
type cgroupHost struct {
	v2           string // the caller's v2 cgroup directory, or ""
	memory, pids string // the caller's v1 cgroup directories, or ""
}

var cgroupHostOnce = sync.OnceValue(func() cgroupHost {
	return findCgroups("/proc/self/cgroup", "/proc/self/mountinfo")
})

// findCgroups reads where this process's cgroups are from the files at
// cgroupPath (/proc/self/cgroup) and mountinfoPath, keeping those in
// which a child cgroup can be made and limited.
func findCgroups(cgroupPath, mountinfoPath string) cgroupHost {
	var h cgroupHost
	own, err := os.ReadFile(cgroupPath)
	if err != nil {
		return h
	}
	mi, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return h
	}
	mounts := cgroupMounts(mi)
	for _, line := range strings.Split(string(own), "\n") {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls, rel := parts[1], parts[2]
		if ctrls == "" {
			if m, ok := mounts["cgroup2"]; ok {
				if dir, ok := m.dir(rel); ok {
					h.v2 = v2Parent(dir, rel)
				}
			}
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			m, ok := mounts[c]
			if !ok || (c != "memory" && c != "pids") {
				continue
			}
			dir, ok := m.dir(rel)
			if !ok || !writable(dir) {
				continue
			}
			if c == "memory" {
				h.memory = dir
			} else {
				h.pids = dir
			}
		}
	}
	return h
}

// cgroupMount is where a cgroup hierarchy is mounted: the cgroup root is
// the hierarchy's cgroup mounted at point.
type cgroupMount struct{ point, root string }

// dir returns the directory of the cgroup rel (a path in the hierarchy),
// if it is below the mount. (A cgroup outside this process's cgroup
// namespace shows as "/.." and below.)
func (m cgroupMount) dir(rel string) (string, bool) {
	if slices.Contains(strings.Split(rel, "/"), "..") {
		return "", false
	}
	if m.root == "/" {
		return filepath.Join(m.point, rel), true
	}
	if rel != m.root && !strings.HasPrefix(rel, m.root+"/") {
		return "", false
	}
	return filepath.Join(m.point, strings.TrimPrefix(rel, m.root)), true
}

// cgroupMounts maps "cgroup2" and each v1 controller to its mount.
func cgroupMounts(mountinfo []byte) map[string]cgroupMount {
	m := map[string]cgroupMount{}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		cm := cgroupMount{point: unescapeMountinfo(f[4]), root: unescapeMountinfo(f[3])}
		switch g[0] {
		case "cgroup2":
			if _, dup := m["cgroup2"]; !dup {
				m["cgroup2"] = cm
			}
		case "cgroup":
			for _, o := range strings.Split(g[2], ",") {
				if _, dup := m[o]; !dup && (o == "memory" || o == "pids") {
					m[o] = cm
				}
			}
		}
	}
	return m
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// v2Delegates reports whether children of the v2 cgroup dir get the memory
// and pids controllers.
func v2Delegates(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	return err == nil && hasFields(string(b), "memory", "pids")
}

// hasFields reports whether the space-separated list s has every one of
// want.
func hasFields(s string, want ...string) bool {
	f := strings.Fields(s)
	for _, w := range want {
		if !slices.Contains(f, w) {
			return false
		}
	}
	return true
}

// v2Leaf is the child of a claimed v2 cgroup that its processes move to.
const v2Leaf = "hephc-processes"

// v2Parent returns the v2 cgroup below which builds' cgroups go, given
// this process's, dir (rel in the hierarchy), or "" if there is none.
func v2Parent(dir, rel string) string {
	switch {
	case !writable(dir):
		return ""
	case v2Delegates(dir):
		return dir
	case filepath.Base(dir) == v2Leaf:
		// Claimed by an earlier run: this one started from a process
		// it moved. (Claimed again should the parent's controllers
		// have been turned off since.)
		if parent := filepath.Dir(dir); writable(parent) && (v2Delegates(parent) || claimV2(parent, path.Dir(rel))) {
			return parent
		}
		return ""
	case claimV2(dir, rel):
		return dir
	}
	return ""
}

// claimV2 makes the v2 cgroup dir (rel in the hierarchy), this process's
// or its parent, delegate the memory and pids controllers to its
// children, and reports whether it does. A cgroup with processes of its
// own cannot (the kernel's "no internal processes" rule, the root cgroup
// aside): so, if enabling them is refused, claimV2 moves every process of
// dir into a child, v2Leaf, and enables them then. Those processes are
// others' too (the shell, go run), so it does so only where dir is
// delegated to them (delegatedTo). Should enabling still fail, it moves
// them back. Builds' cgroups are then siblings of v2Leaf.
func claimV2(dir, rel string) bool {
	ctrls, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil || !hasFields(string(ctrls), "memory", "pids") {
		return false
	}
	enable := func() bool {
		return os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +pids"), 0) == nil && v2Delegates(dir)
	}
	if enable() {
		return true
	}
	// A threaded cgroup cannot take them at all.
	if typ, err := os.ReadFile(filepath.Join(dir, "cgroup.type")); err != nil || strings.TrimSpace(string(typ)) != "domain" {
		return false
	}
	if !delegatedTo(dir, rel) {
		return false
	}
	leaf := filepath.Join(dir, v2Leaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return false
	}
	moveAll(dir, leaf)
	if enable() {
		return true
	}
	moveAll(leaf, dir)
	os.Remove(leaf)
	return false
}

// moveAll moves every process of the v2 cgroup from into to. Processes
// may start in from while it moves them: a few rounds. (A process that
// has ended meanwhile gives ESRCH, a kernel thread cannot move: whether
// all did, the caller's next step says.)
func moveAll(from, to string) {
	for range 5 {
		procs, err := os.ReadFile(filepath.Join(from, "cgroup.procs"))
		if err != nil {
			return
		}
		pids := strings.Fields(string(procs))
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			os.WriteFile(filepath.Join(to, "cgroup.procs"), []byte(pid), 0)
		}
	}
}

// initCgroup is where the cgroups of pid 1 of this process's pid
// namespace are listed.
var initCgroup = "/proc/1/cgroup"

// delegatedTo reports whether the v2 cgroup dir (rel in the hierarchy) is
// delegated to its processes: systemd marked it so (Delegate=yes sets the
// xattr trusted.delegate or user.delegate), or it is a container's, the
// root of this process's cgroup namespace with the container's init (pid
// 1 of this pid namespace) in it, or in the v2Leaf of an earlier claim.
// (A namespace root alone is not: systemd's ProtectControlGroups=private
// gives a unit one, its init the host's, outside it.)
func delegatedTo(dir, rel string) bool {
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		buf := make([]byte, 8)
		if n, err := unix.Getxattr(dir, attr, buf); err == nil && string(buf[:n]) == "1" {
			return true
		}
	}
	if rel != "/" {
		return false
	}
	b, err := os.ReadFile(initCgroup)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v2, ok := strings.CutPrefix(line, "0::"); ok {
			return v2 == "/" || v2 == "/"+v2Leaf
		}
	}
	return false
}

func writable(dir string) bool { return unix.Access(dir, unix.W_OK|unix.X_OK) == nil }

// cgroup is one build's cgroup: a directory in each hierarchy used.
type cgroup struct {
	v2           string
	memory, pids string
}

var cgroupSeq atomic.Int64

// newCgroup makes a cgroup for one build with limits lim, or returns nil
// if this machine has no cgroup to put it in (or lim sets no limit a
// cgroup enforces).
func newCgroup(host cgroupHost, lim Limits) (*cgroup, error) {
	if lim.Memory <= 0 && lim.Pids <= 0 {
		return nil, nil
	}
	sweepOnce.Do(func() { sweepCgroups(host.v2, host.memory, host.pids) })
	name := fmt.Sprintf("hephc-build-%d-%d", os.Getpid(), cgroupSeq.Add(1))
	cg := &cgroup{}
	made := func(parent string) (string, error) {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", fmt.Errorf("sandbox: making cgroup %s: %w", dir, err)
		}
		return dir, nil
	}
	fail := func(err error) (*cgroup, error) {
		cg.remove()
		return nil, err
	}
	var err error
	switch {
	case host.v2 != "":
		if cg.v2, err = made(host.v2); err != nil {
			return fail(err)
		}
		if lim.Memory > 0 {
			if err := writeCgroup(cg.v2, "memory.max", lim.Memory); err != nil {
				return fail(err)
			}
			writeCgroup(cg.v2, "memory.swap.max", 0) // absent without swap accounting
		}
		if lim.Pids > 0 {
			if err := writeCgroup(cg.v2, "pids.max", lim.Pids); err != nil {
				return fail(err)
			}
		}
	default:
		if host.memory != "" && lim.Memory > 0 {
			if cg.memory, err = made(host.memory); err != nil {
				return fail(err)
			}
			if err := writeCgroup(cg.memory, "memory.limit_in_bytes", lim.Memory); err != nil {
				return fail(err)
			}
			// With swap accounting, swap counts too; without, the file
			// is missing.
			writeCgroup(cg.memory, "memory.memsw.limit_in_bytes", lim.Memory)
		}
		if host.pids != "" && lim.Pids > 0 {
			if cg.pids, err = made(host.pids); err != nil {
				return fail(err)
			}
			if err := writeCgroup(cg.pids, "pids.max", lim.Pids); err != nil {
				return fail(err)
			}
		}
	}
	if cg.v2 == "" && cg.memory == "" && cg.pids == "" {
		return nil, nil
	}
	return cg, nil
}

func writeCgroup(dir, file string, v int64) error {
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(strconv.FormatInt(v, 10)), 0); err != nil {
		return fmt.Errorf("sandbox: setting %s: %w", p, err)
	}
	return nil
}

func (cg *cgroup) dirs() []string {
	var ds []string
	for _, d := range []string{cg.v2, cg.memory, cg.pids} {
		if d != "" {
			ds = append(ds, d)
		}
	}
	return ds
}

// add moves the process pid (and so its future children) into cg.
func (cg *cgroup) add(pid int) error {
	for _, d := range cg.dirs() {
		p := filepath.Join(d, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("sandbox: moving the sandbox into %s: %w", d, err)
		}
	}
	return nil
}

// oomKills returns how many processes the kernel killed for lack of
// memory in cg.
func (cg *cgroup) oomKills() int64 {
	switch {
	case cg.v2 != "":
		return cgroupStat(filepath.Join(cg.v2, "memory.events"), "oom_kill")
	case cg.memory != "":
		return cgroupStat(filepath.Join(cg.memory, "memory.oom_control"), "oom_kill")
	}
	return 0
}

// pidsRefused returns how many forks cg's pids limit refused.
func (cg *cgroup) pidsRefused() int64 {
	switch {
	case cg.v2 != "":
		return cgroupStat(filepath.Join(cg.v2, "pids.events"), "max")
	case cg.pids != "":
		return cgroupStat(filepath.Join(cg.pids, "pids.events"), "max")
	}
	return 0
}

// cgroupStat reads the value of key in a file of "KEY VALUE" lines.
func cgroupStat(p, key string) int64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// remove kills what is left in cg and removes it. The caller has waited
// for the sandbox's init, so its processes are gone or going.
func (cg *cgroup) remove() {
	if cg == nil {
		return
	}
	if cg.v2 != "" {
		os.WriteFile(filepath.Join(cg.v2, "cgroup.kill"), []byte("1"), 0)
	}
	for _, d := range cg.dirs() {
		for i := 0; ; i++ {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) || i == 200 {
				break
			}
			// EBUSY until the last process has left.
			if i == 0 {
				killCgroup(d)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// killCgroup kills every process in the cgroup directory d.
func killCgroup(d string) {
	b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// Warnings returns, for people, what this machine cannot give builds with
// limits l, and what holds instead: a realize shows them once. An empty
// result means every limit is enforced as documented.
func Warnings(l Limits) []string {
	var ws []string
	h := cgroupHostOnce()
	if l.Memory > 0 && h.v2 == "" && h.memory == "" {
		ws = append(ws, "no cgroup with the memory controller can be made here (on cgroup v2, run hephc in a cgroup delegated to it: systemd-run [--user] --scope -p Delegate=yes hephc …): each process of a build may use the memory limit (RLIMIT_DATA), not the build as a whole")
	}
	if l.Pids > 0 && h.v2 == "" && h.pids == "" {
		ws = append(ws, "no cgroup with the pids controller can be made here: a build's processes and threads are limited by RLIMIT_NPROC only")
	}
	return ws
}

var sweepOnce sync.Once

// sweepCgroups removes the build cgroups that processes which have since
// died left in dirs (an interrupted realize leaves them).
func sweepCgroups(dirs ...string) {
	for _, parent := range dirs {
		if parent == "" {
			continue
		}
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			rest, ok := strings.CutPrefix(e.Name(), "hephc-build-")
			if !ok || !e.IsDir() {
				continue
			}
			pidStr, _, _ := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidStr)
			if err != nil || pid == os.Getpid() || unix.Kill(pid, 0) == nil {
				continue
			}
			(&cgroup{v2: filepath.Join(parent, e.Name())}).remove()
		}
	}
}
