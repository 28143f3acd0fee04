package fstree

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// CopyTree copies the file tree at src to dst, which must not exist:
// directories, regular files and symlinks (their targets as they are),
// keeping of the permissions only what the tree hash keeps, whether a
// file is executable (copies are 0644 or 0755, directories 0755). src
// itself may be a regular file or a symlink; it is not followed. Anything
// else (a device, fifo or socket) is refused with an error naming it
// relative to src. It returns how many files and symlinks it copied and
// their bytes (symlinks count as none).
func CopyTree(src, dst string) (files int, bytes int64, err error) {
	err = filepath.WalkDir(src, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch typ := de.Type(); {
		case typ.IsDir():
			return os.Mkdir(target, 0o755)
		case typ&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			files++
			return os.Symlink(link, target)
		case typ.IsRegular():
			fi, err := de.Info()
			if err != nil {
				return err
			}
			n, err := CopyFile(path, target, fi.Mode()&0o111 != 0)
			files++
			bytes += n
			return err
		}
		return fmt.Errorf("%s is not a regular file, directory or symbolic link", rel)
	})
	return files, bytes, err
}

// CopyFile copies the regular file src to the new file dst, 0755 if exec
// is set, else 0644, and returns how many bytes it copied.
func CopyFile(src, dst string, exec bool) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	mode := os.FileMode(0o644)
	if exec {
		mode = 0o755
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
