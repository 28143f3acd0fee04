package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// This file makes the sandbox's mounts of host files and directories so
// that /proc/self/mountinfo names no host path. A bind mount shows, as
// its root, the path of its source in the source's file system, which
// would tell the build where the store is and who ran it. So a read-only
// file or directory is bound from an overlayfs of its directory, whose
// lower layer is that directory, given as /proc/self/fd/N: the overlay is
// mounted for the moment on a staging point, shared by everything from
// the same directory (the store's inputs: one overlay), in a tmpfs of
// the old root, detached with it after pivot_root (root.go); their root
// is "/NAME". One that is a mount point
// of its own gets an overlay of its own (a directory) or is bound as it
// is (a file). A writable directory is the upper layer of an overlay of
// its own, whose root is "/". Nothing is copied. Device nodes are bound
// as they are ("/null" in devtmpfs).

// overlayOptions keep overlayfs from following what a lower layer's
// extended attributes say (redirects, metacopy), which a build could have
// written into an output that is another build's input.
const overlayOptions = "redirect_dir=nofollow,metacopy=off,index=off"

// source is a mount's source, opened while the host's tree is in view.
type source struct {
	src, target string
	fd          int // O_PATH, symbolic links followed
	dir         bool
	readOnly    bool
	device      bool // keep device nodes usable (no MS_NODEV)
	// A file's directory, O_PATH, its path, and the file's name in it;
	// parentFD is -1 if the file is a mount point itself, or a device.
	parentFD   int
	parentPath string
	name       string
	workFD     int // a writable directory's overlay work directory, or -1
	// upper is the directory whose overlay a writable directory is bound
	// from (mountJSON.Upper), open as upperFD; "" and -1 for an overlay
	// of its own. lower is the overlay's lower layer in the new root,
	// which holds the mount points of the mounts below it (writable.go).
	upper    string
	upperFD  int
	lower    string
	volatile bool // mountJSON.Volatile
	// stagedFD is the source opened in its directory's overlay (O_PATH),
	// or stageErr why it could not be.
	stagedFD int
	stageErr error
}

// opener opens the sources of the sandbox's mounts and closes them when
// the sandbox is set up.
type opener struct {
	sources []*source
	fds     []int
}

func (o *opener) close() {
	for _, fd := range o.fds {
		unix.Close(fd)
	}
}

func (o *opener) keep(fd int) int {
	o.fds = append(o.fds, fd)
	return fd
}

// add opens src, to be mounted on target. work is the overlay work
// directory of a writable directory. An optional source may be missing.
func (o *opener) add(src, target, work, upper string, readOnly, optional, device bool) error {
	wrap := func(err error) error {
		return fmt.Errorf("sandbox: bind-mounting %s on %s: %w", src, target, err)
	}
	fd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		if optional && errors.Is(err, unix.ENOENT) {
			return nil
		}
		return wrap(err)
	}
	o.keep(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return wrap(err)
	}
	s := &source{src: src, target: target, fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR,
		readOnly: readOnly, device: device, parentFD: -1, workFD: -1, stagedFD: -1, upperFD: -1}
	switch {
	case s.dir && !readOnly && work != "":
		wfd, err := unix.Open(work, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return wrap(fmt.Errorf("opening the overlay work directory: %w", err))
		}
		s.workFD = o.keep(wfd)
		if upper != "" {
			ufd, err := unix.Open(upper, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return wrap(fmt.Errorf("opening the overlay's upper directory: %w", err))
			}
			s.upper, s.upperFD = upper, o.keep(ufd)
		}
	case readOnly && !device:
		s.parentFD, s.parentPath, s.name = o.parent(fd)
	}
	o.sources = append(o.sources, s)
	return nil
}

// parent opens the directory of the file or directory open as fd, unless
// it is a mount point itself (its directory's overlay would show what is
// beneath), and returns it, its path and the name in it.
func (o *opener) parent(fd int) (int, string, string) {
	real, err := os.Readlink(fdPath(fd))
	if err != nil || !filepath.IsAbs(real) || strings.HasSuffix(real, " (deleted)") {
		return -1, "", ""
	}
	pfd, err := unix.Open(filepath.Dir(real), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", ""
	}
	var a, b unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &a) != nil ||
		unix.Statx(pfd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &b) != nil ||
		a.Mask&b.Mask&unix.STATX_MNT_ID == 0 || a.Mnt_id != b.Mnt_id {
		unix.Close(pfd)
		return -1, "", ""
	}
	return o.keep(pfd), filepath.Dir(real), filepath.Base(real)
}

// overlayMounter mounts the overlays, remembering the file systems it
// could not use them for.
type overlayMounter struct {
	r       *rootDir
	staging *rootDir // the staging tmpfs, detached with the old root (root.go)
	empty   int      // an empty directory: the second lower layer a read-only overlay needs
	mntns   int      // see asCaller
	// buildIDs: the build has host ids of its own, and the init's
	// thread works as the build user (see asCaller).
	buildIDs bool
	staged   int // staging points made
	warnings []string
}

// mountDir mounts the directory s on its target: bound from its
// directory's overlay if it is read-only, else as writable.go says.
func (m *overlayMounter) mountDir(s *source) error {
	if !s.readOnly {
		return m.mountWritable(s)
	}
	if s.parentFD >= 0 {
		return m.mountStaged(s)
	}
	fd, err := m.r.open(s.target, true, true)
	if err != nil {
		return fmt.Errorf("sandbox: mounting %s on %s: making mount point: %w", s.src, s.target, err)
	}
	defer unix.Close(fd)
	opts := overlayOptions + fmt.Sprintf(",lowerdir=%s:%s", fdPath(s.fd), fdPath(m.empty))
	err = m.asCaller(func() error {
		return unix.Mount("heph", fdPath(fd), "overlay", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_RDONLY, opts)
	})
	if err != nil {
		m.warn(s, err)
		return m.r.bind(s)
	}
	return nil
}

// asCaller runs f with the access to host files the init was born with:
// when the build has host ids of its own, the init's thread does its work
// as the build user (setfsuid), since a file system mounted in the
// sandbox's user namespace takes new files only from ids mapped there;
// but the caller's uid, which is not mapped, is what may read the sources
// (a read-only overlay reads its lower layer as whoever mounted it). The
// init's other threads never change their ids.
//
// In a keeper (keeperinit.go) the other threads are not in the build's
// mount namespace: that thread enters it (mntns) first, and ends with
// the goroutine.
func (m *overlayMounter) asCaller(f func() error) error {
	if !m.buildIDs {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if m.mntns < 0 {
			defer runtime.UnlockOSThread()
		} else if err := enterMountNS(m.mntns); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// enterMountNS moves the calling thread, locked for good, into the mount
// namespace fd.
func enterMountNS(fd int) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("sandbox: keeper: unsharing a thread's file system attributes: %w", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("sandbox: keeper: entering the build's mount namespace: %w", err)
	}
	return nil
}

// stage mounts the overlay of the directory of each read-only source to
// be bound from one on a staging point, one per directory, and opens each
// source in it. The mounts and opens, which read the host's directories,
// are done in one call as the caller (asCaller).
func (m *overlayMounter) stage(o *opener) error {
	sources := o.sources
	type mount struct {
		fd, parentFD int
		stage        string
		err          error
	}
	var mounts []*mount
	byParent := map[string]*mount{}
	for _, s := range sources {
		if !s.readOnly || s.device || s.parentFD < 0 || s.stagedFD >= 0 || s.stageErr != nil {
			continue
		}
		if _, ok := byParent[s.parentPath]; ok {
			continue
		}
		stage := fmt.Sprintf("/%d", m.staged)
		m.staged++
		fd, err := m.staging.open(stage, true, true)
		if err != nil {
			return fmt.Errorf("sandbox: making staging point %s: %w", stage, err)
		}
		mt := &mount{fd: fd, parentFD: s.parentFD, stage: stage}
		mounts = append(mounts, mt)
		byParent[s.parentPath] = mt
	}
	if len(mounts) == 0 {
		return nil
	}
	defer func() {
		for _, mt := range mounts {
			unix.Close(mt.fd)
		}
	}()
	m.asCaller(func() error {
		for _, mt := range mounts {
			opts := overlayOptions + fmt.Sprintf(",lowerdir=%s:%s", fdPath(mt.parentFD), fdPath(m.empty))
			mt.err = unix.Mount("heph", fdPath(mt.fd), "overlay", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, opts)
		}
		for _, s := range sources {
			mt := byParent[s.parentPath]
			if mt == nil || !s.readOnly || s.device || s.parentFD < 0 || s.stagedFD >= 0 || s.stageErr != nil {
				continue
			}
			if mt.err != nil {
				s.stageErr = mt.err
				continue
			}
			s.stagedFD, s.stageErr = m.staging.open(mt.stage+"/"+s.name, false, false)
			if s.stageErr == nil {
				o.keep(s.stagedFD)
			}
		}
		return nil
	})
	return nil
}

// mountStaged binds the read-only file or directory s on its target from
// its directory's overlay, which stage mounted.
func (m *overlayMounter) mountStaged(s *source) error {
	switch {
	case s.parentFD < 0:
		m.warn(s, errors.New("it is a mount point of its own"))
		return m.r.bind(s)
	case s.stageErr != nil:
		m.warn(s, s.stageErr)
		return m.r.bind(s)
	}
	var st unix.Stat_t
	if err := unix.Fstat(s.stagedFD, &st); err != nil || (st.Mode&unix.S_IFMT == unix.S_IFDIR) != s.dir {
		// Replaced since it was opened: bind what was opened.
		m.warn(s, errors.New("it changed while the sandbox was set up"))
		return m.r.bind(s)
	}
	staged := *s
	staged.fd = s.stagedFD
	return m.r.bind(&staged)
}

func (m *overlayMounter) warn(s *source, err error) {
	m.warnings = append(m.warnings, fmt.Sprintf("%s is bound on %s as it is, so /proc/self/mountinfo shows its host path (overlayfs: %v)", s.src, s.target, err))
}
