package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// This file builds the sandbox's root file system, inside the init.

// The init builds the sandbox's root at newRoot before pivoting into it,
// on a tmpfs mounted on another, at stagingRoot, which holds the staging
// points (mounts.go): the old root, detached in one umount2 after
// pivot_root, takes them with it. Each umount ends in namespace_unlock,
// which waits for an expedited RCU grace period; one for the whole lot
// instead of one per staging point. Every host path the sandbox needs is
// opened before a tmpfs covers it.
const (
	stagingRoot = "/tmp"
	newRoot     = stagingRoot + "/root"
)

// setup builds the sandbox's root and pivots into it. It returns warnings
// for the build's log. mntns is the calling thread's mount namespace,
// open, when the process's other threads are in another (a keeper's
// build thread, keeperinit.go), else -1.
func setup(is *initSpec, mntns int) ([]string, error) {
	s := &is.Spec
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("sandbox: making mounts private: %w", err)
	}

	// Open every source while the host's tree is still in view.
	o := &opener{}
	defer o.close()
	for _, m := range s.Mounts {
		if err := o.add(m.Source, m.Target, m.Work, m.Upper, !m.Writable, false, false); err != nil {
			return nil, err
		}
		o.sources[len(o.sources)-1].volatile = m.Volatile // not optional: added
	}
	if s.Builtin != "" {
		// /proc/self/exe leads to a mount in the host's namespace, which
		// cannot be bind-mounted here: go by its path.
		// The init may be the helper (helper.go): then the parent said.
		exe := is.Exe
		if exe == "" {
			var err error
			if exe, err = os.Readlink("/proc/self/exe"); err != nil {
				return nil, fmt.Errorf("sandbox: finding this executable: %w", err)
			}
		}
		if err := o.add(exe, ExePath, "", "", true, false, false); err != nil {
			return nil, err
		}
		for _, lib := range is.ExeLibs {
			if err := o.add(lib, lib, "", "", true, false, false); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom"} {
		if err := o.add("/dev/"+d, "/dev/"+d, "", "", false, false, true); err != nil {
			return nil, err
		}
	}
	etc := etcFiles(s)
	if s.Network || s.Outbound {
		if err := o.add("/etc/ssl/certs", "/etc/ssl/certs", "", "", true, true, false); err != nil {
			return nil, err
		}
	}
	if s.Network {
		// Copied, not bound: small, and often mount points of their own
		// (in containers), which would show host paths.
		for _, p := range []string{"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf"} {
			if b, err := readSmall(p); err == nil {
				etc = append([]etcFile{{p, b}}, etc...)
			}
		}
	}

	if is.BuildIDs {
		// From here on this thread works as the build user; see
		// overlayMounter.asCaller.
		unix.Setfsgid(GID)
		unix.Setfsuid(UID)
	}
	for _, d := range []string{stagingRoot, newRoot} {
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return nil, fmt.Errorf("sandbox: mounting a tmpfs on %s: %w", d, err)
		}
		if d == stagingRoot {
			if err := unix.Mkdir(newRoot, 0o755); err != nil {
				return nil, fmt.Errorf("sandbox: making %s: %w", newRoot, err)
			}
		}
	}
	staging, err := unix.Open(stagingRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: opening the staging tmpfs: %w", err)
	}
	o.keep(staging)
	root, err := unix.Open(newRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: opening the new root: %w", err)
	}
	o.keep(root)
	r := &rootDir{fd: root}

	// File systems first, so that a Mount may cover /tmp.
	size := ""
	if s.Limits.Tmpfs > 0 {
		size = fmt.Sprintf(",size=%d", s.Limits.Tmpfs)
	}
	for _, m := range []struct {
		fstype, target string
		flags          uintptr
		data           string
	}{
		{"proc", "/proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", "/dev", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0755,size=1m"},
		{"tmpfs", "/dev/shm", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777" + size},
		{"tmpfs", "/tmp", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777" + size},
	} {
		if err := r.mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil {
			return nil, err
		}
	}
	empty, err := r.open("/.hephc/empty", true, true)
	if err != nil {
		return nil, fmt.Errorf("sandbox: making /.hephc/empty: %w", err)
	}
	o.keep(empty)
	om := &overlayMounter{r: r, staging: &rootDir{fd: staging}, empty: empty, buildIDs: is.BuildIDs, mntns: mntns}
	if err := om.stageWritable(o); err != nil {
		return nil, err
	}
	if err := om.stage(o); err != nil {
		return nil, err
	}
	for _, src := range o.sources {
		var err error
		switch {
		case src.device:
			err = r.bind(src)
		case src.dir && (src.readOnly || src.workFD >= 0):
			err = om.mountDir(src)
		case !src.dir && src.readOnly:
			err = om.mountStaged(src)
		default:
			om.warn(src, errors.New("a writable file, or a writable directory without a work directory"))
			err = r.bind(src)
		}
		if err != nil {
			return nil, err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := r.symlink(target, "/dev/"+name); err != nil {
			return nil, err
		}
	}
	for _, f := range etc {
		if err := r.writeFile(f.path, f.data); err != nil {
			return nil, err
		}
	}
	if err := r.workDir(s.Dir, size); err != nil {
		return nil, err
	}

	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return nil, fmt.Errorf("sandbox: setting host name: %w", err)
	}
	if !s.Network && !is.PooledNet {
		if err := loopbackUp(); err != nil {
			return nil, fmt.Errorf("sandbox: bringing up loopback: %w", err)
		}
	}
	if s.Outbound {
		if err := blockRoutes(is.HostAddrs); err != nil {
			return nil, err
		}
	}

	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves the new root alone (see pivot_root(2)), and takes the
	// staging tmpfs and the staging overlays with it.
	if err := unix.Chdir(newRoot); err != nil {
		return nil, fmt.Errorf("sandbox: entering the new root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return nil, fmt.Errorf("sandbox: pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return nil, fmt.Errorf("sandbox: unmounting the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return nil, fmt.Errorf("sandbox: entering the new root: %w", err)
	}
	for _, m := range []struct {
		path  string
		flags uintptr
	}{
		{"/", unix.MS_NOSUID | unix.MS_NODEV},
		{"/dev", unix.MS_NOSUID | unix.MS_NOEXEC},
	} {
		err := unix.Mount("", m.path, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|m.flags, "")
		if err != nil {
			return nil, fmt.Errorf("sandbox: remounting %s read-only: %w", m.path, err)
		}
	}
	return om.warnings, nil
}

// readSmall reads a host file of at most 64 KiB.
func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err == nil && len(b) > 64<<10 {
		err = fmt.Errorf("%s is larger than 64 KiB", p)
	}
	return b, err
}

// fdPath names the file open as fd, for system calls that take a path.
func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// rootDir is the new root while the init builds it. Paths in it are
// resolved without following symbolic links, so a symbolic link in a
// mounted input cannot make the init create or mount anything on the host.
type rootDir struct{ fd int }

// open opens the clean absolute path p under r without following symbolic
// links, as an O_PATH descriptor. If create is set, missing parent
// directories are made, and p itself as a directory (dir) or empty file.
func (r *rootDir) open(p string, create, dir bool) (int, error) {
	fd, err := unix.Dup(r.fd)
	if err != nil {
		return -1, err
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, c := range parts {
		last := i == len(parts)-1
		if create {
			var err error
			switch {
			case !last || dir:
				err = unix.Mkdirat(fd, c, 0o755)
			default:
				var f int
				f, err = unix.Openat(fd, c, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
				if err == nil {
					unix.Close(f)
				}
			}
			if err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, err
			}
		}
		flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if !last {
			flags |= unix.O_DIRECTORY
		}
		next, err := unix.Openat(fd, c, flags, 0)
		unix.Close(fd)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			err = fmt.Errorf("%s is a symbolic link or not a directory: %w", "/"+strings.Join(parts[:i+1], "/"), err)
		}
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// mount mounts a file system of type fstype on target, a directory.
func (r *rootDir) mount(source, target, fstype string, flags uintptr, data string) error {
	fd, err := r.open(target, true, true)
	if err == nil {
		err = unix.Mount(source, fdPath(fd), fstype, flags, data)
		unix.Close(fd)
	}
	if err != nil {
		return fmt.Errorf("sandbox: mounting %s on %s: %w", fstype, target, err)
	}
	return nil
}

// bind bind-mounts b's source on its target, read-only, nosuid and nodev
// as it asks.
func (r *rootDir) bind(b *source) error {
	wrap := func(err error) error {
		return fmt.Errorf("sandbox: bind-mounting %s on %s: %w", b.src, b.target, err)
	}
	fd, err := r.open(b.target, true, b.dir)
	if err != nil {
		return wrap(fmt.Errorf("making mount point: %w", err))
	}
	err = unix.Mount(fdPath(b.fd), fdPath(fd), "", unix.MS_BIND|unix.MS_REC, "")
	unix.Close(fd)
	if err != nil {
		return wrap(err)
	}
	if b.device {
		return nil
	}
	// The new mount covers the mount point: open it again to reach it.
	fd, err = r.open(b.target, false, b.dir)
	if err != nil {
		return wrap(err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if b.readOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr)
	if errors.Is(err, unix.ENOSYS) {
		err = remount(fd, b.readOnly)
	}
	if err != nil {
		return wrap(fmt.Errorf("setting mount flags: %w", err))
	}
	return nil
}

// remount makes the bind mount open as fd nosuid, nodev and, if readOnly,
// read-only, for kernels older than 5.12 which lack mount_setattr. Unlike
// mount_setattr it does not reach submounts. The flags a user namespace
// may not clear (locked by the host) are kept.
func remount(fd int, readOnly bool) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return err
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	for _, f := range []uintptr{unix.MS_RDONLY, unix.MS_NOEXEC, unix.MS_NOATIME, unix.MS_NODIRATIME, unix.MS_RELATIME} {
		if uintptr(st.Flags)&f != 0 {
			flags |= f
		}
	}
	return unix.Mount("", fdPath(fd), "", flags, "")
}

// symlink makes the symbolic link target at p.
func (r *rootDir) symlink(target, p string) error {
	dir, name := splitPath(p)
	fd, err := r.open(dir, true, true)
	if err == nil {
		err = unix.Symlinkat(target, fd, name)
		unix.Close(fd)
	}
	if err != nil {
		return fmt.Errorf("sandbox: making symbolic link %s: %w", p, err)
	}
	return nil
}

// writeFile writes the file p, unless something (a mount) is there.
func (r *rootDir) writeFile(p string, data []byte) error {
	dir, name := splitPath(p)
	dfd, err := r.open(dir, true, true)
	if err != nil {
		if errors.Is(err, unix.EROFS) {
			return nil
		}
		return fmt.Errorf("sandbox: writing %s: %w", p, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EROFS) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox: writing %s: %w", p, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, data); err != nil {
		return fmt.Errorf("sandbox: writing %s: %w", p, err)
	}
	return nil
}

// workDir makes sure the working directory exists: if no mount provides it,
// it becomes an empty tmpfs of the build user's, with the size option size.
func (r *rootDir) workDir(p, size string) error {
	fd, err := r.open(p, false, true)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("sandbox: working directory %s: %w", p, err)
	}
	return r.mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=0755,uid=%d,gid=%d%s", UID, GID, size))
}

func splitPath(p string) (dir, name string) {
	i := strings.LastIndex(p, "/")
	if i == 0 {
		return "/", p[1:]
	}
	return p[:i], p[i+1:]
}

type etcFile struct {
	path string
	data []byte
}

// etcFiles are the files the init writes in /etc (unless a mount provides
// them, or, with Network, the host's are copied).
func etcFiles(s *specJSON) []etcFile {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
	if s.Hostname != "localhost" {
		hosts = fmt.Sprintf("127.0.0.1\tlocalhost %[1]s\n::1\tlocalhost %[1]s\n", s.Hostname)
	}
	files := []etcFile{
		{"/etc/passwd", []byte(fmt.Sprintf(
			"root:x:0:0:root:/root:/noshell\nbuilder:x:%d:%d:builder:/build:/noshell\nnobody:x:65534:65534:nobody:/:/noshell\n",
			UID, GID))},
		{"/etc/group", []byte(fmt.Sprintf("root:x:0:\nbuilder:x:%d:\nnogroup:x:65534:\n", GID))},
		{"/etc/hosts", []byte(hosts)},
	}
	if s.Outbound {
		files = append(files, etcFile{"/etc/resolv.conf", []byte("nameserver " + slirpDNS + "\n")})
	}
	return files
}
