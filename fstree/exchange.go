package fstree

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Exchange puts the tree at src in place of the one at dst in one step
// (renameat2 with RENAME_EXCHANGE) and leaves the old one at src; if
// nothing is at dst, src is moved there. Both must be on one file system.
// An ordinary user can move a directory to another parent only if it is
// writable (its .. changes), so each root that is a directory is given
// u+rwx first; the content stays the same meanwhile, and the caller makes
// the new tree canonical again. On a file system without RENAME_EXCHANGE
// it takes two renames, with a moment in between when dst is missing.
func Exchange(src, dst string) error {
	makeMovable(src)
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		return os.Rename(src, dst)
	}
	makeMovable(dst)
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		aside := src + ".old"
		if err := os.Rename(dst, aside); err != nil {
			return err
		}
		if err = os.Rename(src, dst); err != nil {
			os.Rename(aside, dst)
		} else {
			err = os.Rename(aside, src)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "exchange", Old: src, New: dst, Err: err}
	}
	return nil
}

// makeMovable gives a directory at path u+rwx; anything else is left.
func makeMovable(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		os.Chmod(path, fi.Mode().Perm()|0o700)
	}
}
