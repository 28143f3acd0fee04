package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// This file chooses the host user a build runs as.
//
// An ordinary user's build runs as that user (uid 1000 inside). When the
// caller is root, each build gets a host uid and gid of its own from
// [FirstBuildUID, FirstBuildUID+BuildUIDs), like Nix's auto-allocate-uids,
// so that nothing in the sandbox is host root: the build's uid 1000 maps
// to it and nothing maps to host uid 0. Concurrent builds, in this process
// or any other, never share one: while a build uses uid FirstBuildUID+N,
// its process holds an open file description lock (F_OFD_SETLK) on byte N
// of a file, BuildUIDLocks, opened once per process (uidPool); the lock
// goes when the build ends, or when the process dies.

// FirstBuildUID is the first host uid (and gid) builds run as when the
// caller is root; BuildUIDs is how many there are.
const (
	FirstBuildUID = 0x5A000000 // 1509949440, in systemd's container range
	BuildUIDs     = 1 << 15
)

// BuildUIDLocks are the files whose bytes are the locks on build uids:
// the first whose directory root can make and own is used.
var BuildUIDLocks = []string{"/run/hephc/build-uids.lock", "/var/lib/hephc/build-uids.lock"}

// hostIDs are the host uid and gid of a build, and who to give its files
// back to.
type hostIDs struct {
	uid, gid           int
	ownerUID, ownerGID int // the caller's
	// pooled: uid is FirstBuildUID+slot, locked in uidPool.
	pooled bool
	slot   int64
}

// uidPool is this process's lock file, opened once, and the slots its
// builds use. The locks belong to the file's one open file description,
// which would be granted a lock it holds again: so the process keeps its
// own builds apart (inUse), and the locks keep other processes out.
var uidPool struct {
	mu    sync.Mutex
	f     *os.File
	inUse map[int64]bool
}

// privileged reports whether builds get uids of their own: the caller is
// root.
func privileged() bool { return os.Geteuid() == 0 }

// allocIDs returns the host ids for one build.
func allocIDs() (*hostIDs, error) {
	ids := &hostIDs{uid: os.Getuid(), gid: os.Getgid(), ownerUID: os.Geteuid(), ownerGID: os.Getegid()}
	if !privileged() {
		return ids, nil
	}
	uidPool.mu.Lock()
	defer uidPool.mu.Unlock()
	if uidPool.f == nil {
		var errs []error
		for _, p := range BuildUIDLocks {
			f, err := openUIDLock(p)
			if err == nil {
				uidPool.f, uidPool.inUse = f, map[int64]bool{}
				break
			}
			errs = append(errs, err)
		}
		if uidPool.f == nil {
			return nil, fmt.Errorf("sandbox: choosing a build uid: %w", errors.Join(errs...))
		}
	}
	f := uidPool.f
	for n := int64(0); n < BuildUIDs; n++ {
		if uidPool.inUse[n] {
			continue
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: n, Len: 1}
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			uidPool.inUse[n] = true
			ids.uid, ids.gid, ids.pooled, ids.slot = FirstBuildUID+int(n), FirstBuildUID+int(n), true, n
			return ids, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("sandbox: choosing a build uid: locking %s: %w", f.Name(), err)
		}
	}
	return nil, fmt.Errorf("sandbox: choosing a build uid: all %d build uids are in use", BuildUIDs)
}

// release gives the uid back: after it, another build may use it. Should
// its lock not come off, the slot stays in use.
func (ids *hostIDs) release() {
	if !ids.pooled {
		return
	}
	ids.pooled = false
	uidPool.mu.Lock()
	defer uidPool.mu.Unlock()
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: ids.slot, Len: 1}
	if unix.FcntlFlock(uidPool.f.Fd(), unix.F_OFD_SETLK, &lk) == nil {
		delete(uidPool.inUse, ids.slot)
	}
}

// own reports whether the build runs as a uid of its own, so that its
// writable mounts must be given to it and back.
func (ids *hostIDs) own() bool { return ids.pooled }

// openUIDLock opens (creating) the lock file at p, in a directory only
// root may write.
func openUIDLock(p string) (*os.File, error) {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("%s must be a directory owned by root and writable only by it", dir)
	}
	// Nor may the directories above it let others swap it.
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if err := unix.Stat(d, &st); err != nil {
			return nil, err
		}
		if st.Uid != 0 || (st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0) {
			return nil, fmt.Errorf("%s must be in directories only root may change (%s is not)", p, d)
		}
		if d == "/" {
			break
		}
	}
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// chownTree gives every file under root (root included, symbolic links
// themselves) to uid and gid. It runs when no process of the build is
// left, so nothing moves under it.
func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// workDir is the directory beside the writable directory src in which
// overlayfs keeps its work for the length of a build.
func workDir(src string) string {
	return filepath.Join(filepath.Dir(src), "."+filepath.Base(src)+".hephc-work")
}

// removeWorkDir removes a work directory; overlayfs leaves a directory
// of mode 0 in it.
func removeWorkDir(p string) error {
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// setAside moves what overlayfs left in the work directory p (work, and
// incompat/volatile after a volatile mount) into .aside beside it, and
// returns where it went, for removeAside; what cannot be moved is
// removed. A rename is quick, where removing a directory frees its
// block, which ext4 mounted with discard and without a journal discards
// before rmdir returns (1–80 ms a build here, with the disk busy): the
// next Run with the work directory waits only for the rename.
func setAside(p string) []string {
	names, err := dirNames(p)
	if err != nil {
		return nil
	}
	aside := filepath.Join(filepath.Dir(p), ".aside")
	if err := os.Mkdir(aside, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		emptyWorkDir(p)
		return nil
	}
	var moved []string
	for _, n := range names {
		dst := filepath.Join(aside, fmt.Sprintf("%s.%d.%d", n, os.Getpid(), asideSeq.Add(1)))
		if err := os.Rename(filepath.Join(p, n), dst); err != nil {
			removeWorkDir(filepath.Join(p, n))
			continue
		}
		moved = append(moved, dst)
	}
	return moved
}

var asideSeq atomic.Int64

// removeAside removes what setAside moved.
func removeAside(ps []string) {
	for _, p := range ps {
		removeWorkDir(p)
	}
}

// dirNames returns the names in the directory p.
func dirNames(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// emptyWorkDir removes what overlayfs left in the work directory p
// (work, and in it incompat/volatile after a volatile mount, which the
// next mount would refuse), and fails if anything is left.
func emptyWorkDir(p string) error {
	names, err := dirNames(p)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeWorkDir(filepath.Join(p, n)); err != nil {
			return err
		}
	}
	return nil
}
