// Package localsrc copies a configuration's local sources, a file or a
// directory tree beneath the configuration's directory, without ever
// reading outside that directory.
//
// The source's path is resolved with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS) from the directory: a symbolic link on the way,
// or the source itself, may lead elsewhere beneath the directory, but one
// that leads outside it (an absolute link, or ".." past the top) is
// refused, and so are /proc's magic links. Inside a copied tree nothing is
// followed: every entry is opened relative to its directory's descriptor
// with O_NOFOLLOW, so a tree renamed or relinked while it is copied
// cannot lead the copy outside either, and symbolic links are copied as
// the links they are. Only regular files, directories and symbolic links
// are copied; a FIFO, socket or device is refused.
package localsrc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Stats say what Copy copied.
type Stats struct {
	Files int   // regular files and symbolic links
	Bytes int64 // the regular files' contents
}

// EscapeError is a source whose path leads outside its directory.
type EscapeError struct {
	Dir, Path string // the directory and the source's path in it
	Err       error
}

func (e *EscapeError) Error() string {
	return fmt.Sprintf("localsrc: %s: the path leads outside %s (through a symbolic link on the way, or it is one): %v", e.Path, e.Dir, e.Err)
}

func (e *EscapeError) Unwrap() error { return e.Err }

// ErrTooLarge is wrapped by the error Copy returns when the source holds
// more than its limit.
var ErrTooLarge = errors.New("larger than the limit")

// Copy copies the file or directory tree rel, a relative path beneath the
// directory dir, to dst, which must not exist: files with their
// executable bits (mode 0644 or 0755), directories (0755) and symbolic
// links. A directory's filter f chooses what of it is copied (a file
// takes none). If maxBytes is positive, a source whose files hold more
// than maxBytes is refused, and the copy removed.
func Copy(dir, rel string, f Filter, dst string, maxBytes int64) (Stats, error) {
	c, err := f.compile()
	if err != nil {
		return Stats{}, fmt.Errorf("localsrc: %s: %w", rel, err)
	}
	if !filepath.IsLocal(rel) {
		return Stats{}, fmt.Errorf("localsrc: %q is not a relative path beneath %s", rel, dir)
	}
	top, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("localsrc: opening %s: %w", dir, err)
	}
	defer unix.Close(top)
	fd, err := openBeneath(top, filepath.ToSlash(filepath.Clean(rel)))
	if err != nil {
		if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
			return Stats{}, &EscapeError{Dir: dir, Path: rel, Err: err}
		}
		return Stats{}, fmt.Errorf("localsrc: %s: %w", rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Stats{}, fmt.Errorf("localsrc: %s: %w", rel, err)
	}
	cp := &copier{filter: c, max: maxBytes}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if !f.IsZero() {
			return Stats{}, fmt.Errorf("localsrc: %s: include and exclude patterns choose part of a directory, and this is a file", rel)
		}
		err = cp.file(fd, rel, dst)
	case unix.S_IFDIR:
		var dfd int
		if dfd, err = unix.Dup(fd); err == nil {
			if err = os.Mkdir(dst, 0o755); err == nil {
				err = cp.dir(dfd, nil, dst)
			} else {
				unix.Close(dfd)
			}
		}
	default:
		err = fmt.Errorf("not a regular file or directory")
	}
	if err != nil {
		os.RemoveAll(dst)
		return Stats{}, fmt.Errorf("localsrc: %s: %w", rel, err)
	}
	return cp.stats, nil
}

// readFlags open a source for reading; O_NONBLOCK so that a FIFO does not
// hang the open (it is refused once open).
const readFlags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC

// openBeneath opens rel beneath the directory top for reading, following
// symbolic links that stay beneath it. Where openat2 is missing (Linux
// before 5.6), no symbolic link is followed.
func openBeneath(top int, rel string) (int, error) {
	how := &unix.OpenHow{Flags: readFlags, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(top, rel, how)
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	fd, err = unix.Dup(top)
	if err != nil {
		return -1, err
	}
	parts := strings.Split(rel, "/")
	for i, c := range parts {
		flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			flags = readFlags | unix.O_NOFOLLOW
		}
		next, err := unix.Openat(fd, c, flags, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// copier copies one source.
type copier struct {
	filter *compiled
	max    int64
	stats  Stats
}

// dir copies what the filter chooses of the open directory dfd (which it
// closes), at the path of elements elems in the source, into the existing
// directory dst.
func (cp *copier) dir(dfd int, elems []string, dst string) error {
	d := os.NewFile(uintptr(dfd), strings.Join(elems, "/"))
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		e := append(elems[:len(elems):len(elems)], name)
		rel := strings.Join(e, "/")
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		ch := cp.filter.choose(e, isDir)
		if ch == skip {
			continue
		}
		target := filepath.Join(dst, name)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			sub, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if err := os.Mkdir(target, 0o755); err != nil {
				unix.Close(sub)
				return err
			}
			if err := cp.dir(sub, e, target); err != nil {
				return err
			}
			if ch == look {
				// Made on the way; gone again if nothing was chosen in it.
				os.Remove(target)
			}
		case unix.S_IFREG:
			fd, err := unix.Openat(dfd, name, readFlags|unix.O_NOFOLLOW, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			err = cp.file(fd, rel, target)
			unix.Close(fd)
			if err != nil {
				return err
			}
		case unix.S_IFLNK:
			link, err := readlinkat(dfd, name)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
			cp.stats.Files++
		default:
			return fmt.Errorf("%s is not a regular file, directory or symbolic link", rel)
		}
	}
	return nil
}

// file copies the regular file open as fd, the source's rel, to the new
// file dst.
func (cp *copier) file(fd int, rel, dst string) error {
	nfd, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	in := os.NewFile(uintptr(nfd), rel)
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", rel)
	}
	mode := os.FileMode(0o644)
	if fi.Mode()&0o111 != 0 {
		mode = 0o755
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	r := io.Reader(in)
	if cp.max > 0 {
		r = io.LimitReader(in, cp.max-cp.stats.Bytes+1)
	}
	n, err := io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	cp.stats.Bytes += n
	cp.stats.Files++
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if cp.max > 0 && cp.stats.Bytes > cp.max {
		return fmt.Errorf("%w of %d bytes (at %s)", ErrTooLarge, cp.max, rel)
	}
	return nil
}

func readlinkat(dfd int, name string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		m, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return "", err
		}
		if m < n {
			return string(buf[:m]), nil
		}
	}
}
