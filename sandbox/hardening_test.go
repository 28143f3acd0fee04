package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeMore are the probes of what the seccomp filter, the uid mapping
// and the mount setup deny; see probe.
func probeMore(op, arg string, env []string) (string, error, bool) {
	switch op {
	case "shm":
		// How many SysV shared memory segments there are; then one more,
		// which outlives this process in its IPC namespace.
		b, err := os.ReadFile("/proc/sysvipc/shm")
		if err != nil {
			return "", err, true
		}
		n := strings.Count(strings.TrimSpace(string(b)), "\n")
		_, err = unix.SysvShmGet(0x4845, 4096, unix.IPC_CREAT|0o600)
		return strconv.Itoa(n), err, true
	case "uidmap":
		b, err := os.ReadFile("/proc/self/uid_map")
		return strings.Join(strings.Fields(string(b)), " "), err, true
	case "gidmap":
		b, err := os.ReadFile("/proc/self/gid_map")
		return strings.Join(strings.Fields(string(b)), " "), err, true
	case "groups":
		g, err := os.Getgroups()
		return fmt.Sprint(g), err, true
	case "seccomp":
		b, err := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
				return strings.TrimSpace(v), err, true
			}
		}
		return "", errors.New("no Seccomp line"), true
	case "clone-newuser":
		// A child in a new user namespace, as a nested sandbox would be.
		path, argv := BuiltinArgv("true")
		pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env,
			Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}})
		if err == nil {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
		return "", err, true
	case "unshare-newuser":
		runtime.LockOSThread() // the thread is spoiled if this succeeds
		return "", unix.Unshare(unix.CLONE_NEWUSER), true
	case "clone3":
		// A clone3 the kernel itself would refuse (size 0, EINVAL): only
		// the filter answers ENOSYS.
		_, _, errno := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
		return "", errnoErr(errno), true
	case "keyctl":
		_, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, true)
		return "", err, true
	case "add_key":
		_, err := unix.AddKey("user", "hephc-test", []byte("secret"), unix.KEY_SPEC_PROCESS_KEYRING)
		return "", err, true
	case "bpf":
		var attr [128]byte
		_, _, errno := unix.RawSyscall(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		return "", errnoErr(errno), true
	case "perf":
		_, _, errno := unix.RawSyscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
		return "", errnoErr(errno), true
	case "mount-tmpfs":
		return "", unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""), true
	case "route-add":
		return "", blockRoutes(nil), true
	case "mkdir":
		return "", os.Mkdir(arg, 0o755), true
	case "symlink":
		return "", os.Symlink("target", arg), true
	case "dial-unix":
		c, err := net.DialTimeout("unix", arg, 2*time.Second)
		if err != nil {
			return "", err, true
		}
		return "", c.Close(), true
	case "resolve":
		addrs, err := net.LookupHost(arg)
		return strings.Join(addrs, " "), err, true
	}
	return "", nil, false
}

func errnoErr(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

// TestNoHostRoot: nothing in the sandbox maps to host uid 0, the build is
// uid and gid 1000 with no capabilities, and, when the caller is root, has
// neither its uid nor its groups.
func TestNoHostRoot(t *testing.T) {
	res := runProbes(t, Spec{}, "uidmap", "gidmap", "ids", "groups", "status")
	t.Logf("results: %q", res)
	for _, op := range []string{"uidmap", "gidmap"} {
		f := strings.Fields(strings.TrimPrefix(res[op], "ok: "))
		if len(f) != 3 || f[0] != "1000" || f[2] != "1" {
			t.Fatalf("%s: got %q, want one line mapping 1000", op, res[op])
		}
		if f[1] == "0" {
			t.Errorf("%s: the build's id is host id 0: %q", op, res[op])
		}
		if host, _ := strconv.Atoi(f[1]); privileged() && (host < FirstBuildUID || host >= FirstBuildUID+BuildUIDs) {
			t.Errorf("%s: host id %s, want one of the build uids from %d", op, f[1], FirstBuildUID)
		}
	}
	wantOK(t, res, "ids", "1000 1000 1000 1000")
	if privileged() {
		wantOK(t, res, "groups", "[]")
	}
	wantOK(t, res, "status",
		"CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 "+
			"CapBnd:0000000000000000 CapAmb:0000000000000000 NoNewPrivs:1")
}

// TestSeccomp: what builds never need is refused, what they need is not.
func TestSeccomp(t *testing.T) {
	res := runProbes(t, Spec{}, "seccomp", "clone-newuser", "unshare-newuser", "clone3",
		"keyctl", "add_key", "bpf", "perf", "mount-tmpfs", "ptrace=1", "route-add", "run=true", "loopback")
	t.Logf("results: %q", res)
	wantOK(t, res, "seccomp", "2")
	for _, op := range []string{"clone-newuser", "unshare-newuser", "keyctl", "add_key", "bpf", "perf",
		"mount-tmpfs", "ptrace=1", "route-add"} {
		wantErr(t, res, op, "operation not permitted")
	}
	wantErr(t, res, "clone3", "function not implemented")
	wantOK(t, res, "run=true", "")
	wantOK(t, res, "loopback", "")
}

func TestSeccompFilterFits(t *testing.T) {
	// BPF jumps are relative and at most 255 forward; the program must
	// stay small enough for the labels to resolve (seccompFilter panics
	// otherwise) and for the kernel (4096 instructions).
	if n := len(seccompFilter()); n > 200 {
		t.Errorf("the seccomp filter has %d instructions", n)
	}
}

// TestMountinfoHidesHostPaths: /proc/self/mountinfo inside a build set up
// as the store sets one up (inputs, a file input, writable $out and
// /build, this executable) names neither the store's directory nor the
// test's temporary directory.
func TestMountinfoHidesHostPaths(t *testing.T) {
	top := t.TempDir()
	store := filepath.Join(top, "hephc-store-dir")
	for _, d := range []string{"store/aaa-in/sub", "tmp/build-1/store", "tmp/build-1/build", "tmp/build-1/heph"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(store, "store/aaa-in/sub/f"), []byte("in"), 0o444)
	os.WriteFile(filepath.Join(store, "store/bbb-file"), []byte("file"), 0o444)
	os.WriteFile(filepath.Join(store, "tmp/build-1/heph/build.json"), []byte("{}"), 0o444)
	tmp := filepath.Join(store, "tmp/build-1")
	exe, _ := os.Executable()
	res := runProbes(t, Spec{Mounts: []Mount{
		{Source: filepath.Join(tmp, "store"), Target: "/heph/store", Writable: true},
		{Source: filepath.Join(tmp, "build"), Target: "/build", Writable: true},
		{Source: filepath.Join(tmp, "heph"), Target: "/.heph"},
		{Source: filepath.Join(store, "store/aaa-in"), Target: "/heph/store/aaa-in"},
		{Source: filepath.Join(store, "store/bbb-file"), Target: "/heph/store/bbb-file"},
	}}, "read=/proc/self/mountinfo", "read=/heph/store/aaa-in/sub/f", "read=/heph/store/bbb-file",
		"read=/.heph/build.json", "write=/heph/store/ccc-out", "write=/build/x")
	mi := res["read=/proc/self/mountinfo"]
	t.Logf("mountinfo:\n%s", mi)
	if !strings.HasPrefix(mi, "ok: ") {
		t.Fatalf("reading mountinfo: %s", mi)
	}
	for _, host := range []string{top, "hephc-store-dir", filepath.Dir(exe) + "/", os.TempDir() + "/"} {
		if strings.Contains(mi, host) {
			t.Errorf("mountinfo names the host path %s", host)
		}
	}
	wantOK(t, res, "read=/heph/store/aaa-in/sub/f", "in")
	wantOK(t, res, "read=/heph/store/bbb-file", "file")
	wantOK(t, res, "read=/.heph/build.json", "{}")
	wantOK(t, res, "write=/heph/store/ccc-out", "")
	wantOK(t, res, "write=/build/x", "")
	if b, err := os.ReadFile(filepath.Join(tmp, "store/ccc-out")); err != nil || string(b) != "written inside\n" {
		t.Errorf("$out on the host: got %q, %v", b, err)
	}
	for _, d := range []string{tmp, filepath.Dir(tmp)} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".hephc-work") {
				t.Errorf("work directory %s left behind in %s", e.Name(), d)
			}
		}
	}
	// The inputs' mount points below $out's directory were made in the
	// sandbox (writable.go), not on the host's disk.
	ents, _ := os.ReadDir(filepath.Join(tmp, "store"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "ccc-out" {
		t.Errorf("the host's $out directory holds %q, want only ccc-out", names)
	}
	// Their parent, lent to the build user for their shared overlay, is
	// the caller's again.
	var st syscall.Stat_t
	if err := syscall.Stat(tmp, &st); err != nil || int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Errorf("%s: owned by %d:%d (%v), want %d:%d", tmp, st.Uid, st.Gid, err, os.Geteuid(), os.Getegid())
	}
}

// TestOutputsOwnedByCaller: what the build writes to its writable mounts
// belongs to the caller once Run returns, whichever host uid the build
// had.
func TestOutputsOwnedByCaller(t *testing.T) {
	out := t.TempDir()
	res := runProbes(t, Spec{Mounts: []Mount{{Source: out, Target: "/out", Writable: true}}},
		"write=/out/file", "mkdir=/out/dir", "write=/out/dir/file", "symlink=/out/link")
	t.Logf("results: %q", res)
	n := 0
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
			t.Errorf("%s: owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, os.Geteuid(), os.Getegid())
		}
		n++
		return nil
	})
	if err != nil || n != 5 {
		t.Errorf("walked %d files (%v), want 5", n, err)
	}
}

// TestBuildUIDsAreDistinct: concurrent builds, as root, never share a uid,
// and a released uid is used again.
func TestBuildUIDsAreDistinct(t *testing.T) {
	if !privileged() {
		t.Skip("build uids of their own are for a caller that is root")
	}
	const n = 8
	var mu sync.Mutex
	seen := map[int]bool{}
	var all []*hostIDs
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, err := allocIDs()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[ids.uid] || ids.uid < FirstBuildUID || ids.uid >= FirstBuildUID+BuildUIDs || ids.gid != ids.uid {
				t.Errorf("got uid %d gid %d; seen %v", ids.uid, ids.gid, seen)
			}
			seen[ids.uid] = true
			all = append(all, ids)
		}()
	}
	wg.Wait()
	low := FirstBuildUID + BuildUIDs
	for _, ids := range all {
		low = min(low, ids.uid)
	}
	for _, ids := range all {
		ids.release()
	}
	ids, err := allocIDs()
	if err != nil {
		t.Fatal(err)
	}
	defer ids.release()
	if ids.uid > low {
		t.Errorf("after release got uid %d, want %d or lower again", ids.uid, low)
	}
}

// TestBuildUIDsSkipOtherProcesses: a uid whose byte another process (here
// another open file description) has locked is never given to a build, and
// a build's uid is locked, for other processes, until it is released.
func TestBuildUIDsSkipOtherProcesses(t *testing.T) {
	if !privileged() {
		t.Skip("build uids of their own are for a caller that is root")
	}
	first, err := allocIDs() // opens the pool's file
	if err != nil {
		t.Fatal(err)
	}
	first.release()
	other, err := os.OpenFile(uidPool.f.Name(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock := func(n int64, typ int16) error {
		lk := unix.Flock_t{Type: typ, Start: n, Len: 1}
		return unix.FcntlFlock(other.Fd(), unix.F_OFD_SETLK, &lk)
	}
	// The other process holds the first free slot.
	held := int64(-1)
	for n := int64(0); n < BuildUIDs && held < 0; n++ {
		if lock(n, unix.F_WRLCK) == nil {
			held = n
		}
	}
	ids, err := allocIDs()
	if err != nil {
		t.Fatal(err)
	}
	if ids.uid == FirstBuildUID+int(held) {
		t.Errorf("got uid %d, which another process holds", ids.uid)
	}
	if err := lock(ids.slot, unix.F_WRLCK); err == nil {
		t.Errorf("another process could lock the slot of uid %d, in use", ids.uid)
	}
	lock(held, unix.F_UNLCK)
	ids.release()
}

// TestUIDLockRefusesOthersDirectories: the lock file is not opened where
// another user could have put a link in its place.
func TestUIDLockRefusesOthersDirectories(t *testing.T) {
	if !privileged() {
		t.Skip("build uids of their own are for a caller that is root")
	}
	top := t.TempDir()
	open := filepath.Join(top, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if _, err := openUIDLock(filepath.Join(open, "l")); err == nil || !strings.Contains(err.Error(), "writable only by it") {
		t.Errorf("a world-writable directory: got %v", err)
	}
	theirs := filepath.Join(top, "theirs")
	os.Mkdir(theirs, 0o755)
	os.Chown(theirs, 12345, 12345)
	if _, err := openUIDLock(filepath.Join(theirs, "sub", "l")); err == nil {
		t.Error("a directory below another user's: got no error")
	}
	f, err := openUIDLock(filepath.Join(top, "ok", "l"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
