package fstree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// RemoveTree deletes the file tree at path, as os.RemoveAll does, even when
// it is read-only: a directory its owner may not read, enter or write is
// given u+rwx, but only once an open or unlink in it is refused (never, as
// root), so that the common case costs one open, one getdents and one
// unlink per entry. It never follows a symlink, so it cannot leave the
// tree; a symlink at path itself is removed, not its target. Like
// os.RemoveAll it returns nil if path does not exist, and otherwise the
// first error, after deleting all it could. The directory holding path
// must be writable. Paths whose last element is ".", ".." or "/" are
// refused.
func RemoveTree(path string) error {
	if base := filepath.Base(path); base == "." || base == ".." || base == "/" {
		return fmt.Errorf("removing tree %q: refusing to remove %s", path, base)
	}
	buf := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(buf)
	if err := removeAt(unix.AT_FDCWD, path, path, *buf); err != nil {
		return fmt.Errorf("removing tree %s: %w", path, err)
	}
	return nil
}

// direntBufs hold getdents buffers, one per RemoveTree running.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

// removeAt removes name in dirfd, which is at path.
func removeAt(dirfd int, name, path string, buf []byte) error {
	fd, err := openDirNoFollow(dirfd, name)
	if err == unix.EACCES {
		// A directory its owner may not read or enter.
		if err := unix.Fchmodat(dirfd, name, 0o700, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
		fd, err = openDirNoFollow(dirfd, name)
	}
	switch err {
	case nil:
	case unix.ENOTDIR, unix.ELOOP: // a file or a symlink
		return unlinkEntry(dirfd, name, path, 0)
	case unix.ENOENT:
		return nil
	default:
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	entries, err := readEntries(fd, buf)
	if err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "getdents", Path: path, Err: err}
	}
	var first error
	writable := false
	for _, e := range entries {
		cpath := path + "/" + e.name
		for {
			var err error
			if e.dir {
				err = removeAt(fd, e.name, cpath, buf)
			} else if err = unlinkEntry(fd, e.name, cpath, 0); errors.Is(err, unix.EISDIR) {
				e.dir = true // a file system without entry types
				continue
			}
			if errors.Is(err, unix.EACCES) && !writable {
				// A directory its owner may not write, as a canonical
				// one is to an ordinary user.
				writable = true
				if unix.Fchmod(fd, 0o700) == nil {
					continue
				}
			}
			if err != nil && first == nil {
				first = err
			}
			break
		}
	}
	unix.Close(fd)
	if first != nil {
		return first
	}
	return unlinkEntry(dirfd, name, path, unix.AT_REMOVEDIR)
}

func openDirNoFollow(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// unlinkEntry removes name in dirfd (at path); one already gone is no error.
func unlinkEntry(dirfd int, name, path string, flags int) error {
	for {
		err := unix.Unlinkat(dirfd, name, flags)
		switch err {
		case nil, unix.ENOENT:
			return nil
		case unix.EINTR:
			continue
		}
		op := "unlink"
		if flags&unix.AT_REMOVEDIR != 0 {
			op = "rmdir"
		}
		return &os.PathError{Op: op, Path: path, Err: err}
	}
}

// dirEntry is a name in a directory, and whether getdents says it is one.
type dirEntry struct {
	name string
	dir  bool
}

// readEntries reads the entries of the directory fd (but . and ..) with
// getdents into buf.
func readEntries(fd int, buf []byte) ([]dirEntry, error) {
	var entries []dirEntry
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return entries, nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8,
		// then the name, NUL-terminated.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return nil, unix.EINVAL
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				entries = append(entries, dirEntry{s, b[18] == unix.DT_DIR})
			}
			b = b[reclen:]
		}
	}
}

// A Remover removes trees (RemoveTree) with a few goroutines, for when
// there are many: unlink and rmdir, in the kernel, are the slow part, and
// run best with more workers than cores.
type Remover struct {
	paths chan string
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

// NewRemover starts a Remover of workers goroutines.
func NewRemover(workers int) *Remover {
	r := &Remover{paths: make(chan string, 4096)}
	for range workers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for p := range r.paths {
				if err := RemoveTree(p); err != nil {
					r.mu.Lock()
					if r.err == nil {
						r.err = err
					}
					r.mu.Unlock()
				}
			}
		}()
	}
	return r
}

// Remove queues the tree at path for removal.
func (r *Remover) Remove(path string) { r.paths <- path }

// Wait waits for every queued removal, stops the workers and returns the
// first error.
func (r *Remover) Wait() error {
	close(r.paths)
	r.wg.Wait()
	return r.err
}
