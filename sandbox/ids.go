package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// This file chooses the host user a build runs as.
//
// An ordinary user's build runs as that user (uid 1000 inside). When the
// caller is root, each build gets a host uid and gid of its own from
// [FirstBuildUID, FirstBuildUID+BuildUIDs), like Nix's auto-allocate-uids,
// so that nothing in the sandbox is host root: the build's uid 1000 maps
// to it and nothing maps to host uid 0. Concurrent builds, in this process
// or any other, never share one: a build holds an open file description
// lock (F_OFD_SETLK) on byte N of a file, BuildUIDLocks, while it uses uid
// FirstBuildUID+N, and the lock goes when the build's descriptor is
// closed, also when the process dies.

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
	lock               *os.File
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
	var f *os.File
	var errs []error
	for _, p := range BuildUIDLocks {
		var err error
		if f, err = openUIDLock(p); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if f == nil {
		return nil, fmt.Errorf("sandbox: choosing a build uid: %w", errors.Join(errs...))
	}
	for n := int64(0); n < BuildUIDs; n++ {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: n, Len: 1}
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			ids.uid, ids.gid, ids.lock = FirstBuildUID+int(n), FirstBuildUID+int(n), f
			return ids, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			f.Close()
			return nil, fmt.Errorf("sandbox: choosing a build uid: locking %s: %w", f.Name(), err)
		}
	}
	f.Close()
	return nil, fmt.Errorf("sandbox: choosing a build uid: all %d build uids are in use", BuildUIDs)
}

// release gives the uid back: after it, another build may use it.
func (ids *hostIDs) release() {
	if ids.lock != nil {
		ids.lock.Close()
		ids.lock = nil
	}
}

// own reports whether the build runs as a uid of its own, so that its
// writable mounts must be given to it and back.
func (ids *hostIDs) own() bool { return ids.lock != nil }

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
