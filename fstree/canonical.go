package fstree

import (
	"fmt"
	"io/fs"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// canonicalTime is the mtime (and atime) of every entry of a canonical
// tree, as in Nix: Unix time 1, not 0, which some tools take for "unset".
var canonicalTime = []unix.Timespec{{Sec: 1}, {Sec: 1}}

// Canonicalize makes a finished build output at root store-ready: regular
// files become 0444, or 0555 if any exec bit was set; directories 0555;
// setuid, setgid and sticky bits go; symlinks keep their (meaningless) mode.
// Every entry, root included, gets atime and mtime Unix time 1, set on the
// entry itself, never through a symlink. A directory gets its mode and
// times after its children. Canonicalize never follows a symlink, and
// refuses devices, fifos and sockets with an error naming them relative to
// root; it may leave the tree half done then, as with any other error.
//
// The tree hash does not depend on anything Canonicalize changes except
// through the exec bit, which it keeps; no process may change the tree
// meanwhile.
func Canonicalize(root string) error { return CanonicalizeAs(root, AnyOwner) }

// CanonicalizeAs is Canonicalize, and gives every entry (symlinks
// included, never what they point at) that uid does not own to uid,
// unless uid is AnyOwner; groups are left as they are. Only root may
// give files away: to anyone else, an entry owned by another uid is an
// error.
func CanonicalizeAs(root string, uid int) error {
	if err := canonicalizeAt(unix.AT_FDCWD, root, root, ".", uid); err != nil {
		return fmt.Errorf("canonicalizing %s: %w", root, err)
	}
	return nil
}

// canonicalizeAt canonicalizes name in dirfd, which is at path and at rel
// from the root, giving it to uid unless that is AnyOwner.
func canonicalizeAt(dirfd int, name, path, rel string, uid int) error {
	var st unix.Stat_t
	if err := fstatatNoFollow(dirfd, name, path, &st); err != nil {
		return err
	}
	if uid != AnyOwner && int(st.Uid) != uid {
		// Before the mode: a chown clears setuid and setgid bits.
		if err := unix.Fchownat(dirfd, name, uid, -1, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: path, Err: err}
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
	case unix.S_IFREG:
		mode := uint32(0o444)
		if st.Mode&0o111 != 0 {
			mode = 0o555
		}
		if err := unix.Fchmodat(dirfd, name, mode, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	case unix.S_IFDIR:
		fd, names, err := openDir(dirfd, name, path, uint32(st.Mode), 0o500)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		slices.Sort(names) // so that the first bad entry is always the same
		for _, c := range names {
			if err := canonicalizeAt(fd, c, path+"/"+c, joinRel(rel, c), uid); err != nil {
				return err
			}
		}
		if err := unix.Fchmod(fd, 0o555); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	default:
		return fmt.Errorf("%s: unsupported file type %s (only regular files, directories and symlinks may be in an output)",
			rel, describeType(unixType(uint32(st.Mode))))
	}
	if err := unix.UtimesNanoAt(dirfd, name, canonicalTime, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: path, Err: err}
	}
	return nil
}

// unixType maps the file type bits of a stat mode to an fs.FileMode type.
func unixType(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

func fstatatNoFollow(dirfd int, name, path string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		return nil
	}
}

// openDir opens the directory name in dirfd (at path) without following a
// symlink, first adding the owner permissions need (0o500 to list it), and
// reads its entry names. The caller closes fd.
func openDir(dirfd int, name, path string, mode, need uint32) (fd int, names []string, err error) {
	if mode&need != need {
		if err := unix.Fchmodat(dirfd, name, mode&0o7777|need, 0); err != nil {
			return -1, nil, &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	}
	for {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return -1, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	// Read the names through a duplicate, which os.File may close.
	dup, err := unix.Dup(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, &os.PathError{Op: "dup", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(dup), path)
	names, err = f.Readdirnames(-1)
	f.Close()
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, names, nil
}
