package fstree

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WriteTar writes the file tree at root to w as a tar stream that depends
// on nothing but what the tree hash covers: entries in the order of the
// hash (a directory before its entries, entries sorted by name), every
// one under name (root itself is name, its entries name/…), in PAX
// format, with mtime 0, uid and gid 0, no owner names, and the modes
// Canonicalize gives (0444 or 0555 for a file, 0555 for a directory,
// 0777 for a symlink). root is not followed if it is a symlink. Two trees
// with the same hash give the same bytes.
func WriteTar(w io.Writer, root, name string) error {
	if !validTarName(name) {
		return fmt.Errorf("writing tar of %s: %q is not a relative path without . or .. elements", root, name)
	}
	tw := tar.NewWriter(w)
	if err := writeTarEntry(tw, root, name); err != nil {
		return fmt.Errorf("writing tar of %s: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing tar of %s: %w", root, err)
	}
	return nil
}

func writeTarEntry(tw *tar.Writer, p, name string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	switch fi.Mode().Type() {
	case fs.ModeDir:
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o555
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		entries, err := os.ReadDir(p) // sorted by name bytes
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := writeTarEntry(tw, p+"/"+e.Name(), name+"/"+e.Name()); err != nil {
				return err
			}
		}
		return nil
	case fs.ModeSymlink:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
		return tw.WriteHeader(hdr)
	case 0:
		return writeTarFile(tw, p, hdr)
	}
	return fmt.Errorf("%s: unsupported file type %s", name, describeType(fi.Mode()))
}

func writeTarFile(tw *tar.Writer, p string, hdr *tar.Header) error {
	fd, err := openNoFollow(p)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s changed while being written: no longer a regular file", hdr.Name)
	}
	hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, fi.Size(), 0o444
	if fi.Mode()&0o111 != 0 {
		hdr.Mode = 0o555
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	return nil
}

// validTarName reports whether name is a relative slash-separated path
// without empty, . or .. elements.
func validTarName(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
		return false
	}
	for _, e := range strings.Split(name, "/") {
		if e == "" || e == "." || e == ".." {
			return false
		}
	}
	return true
}

// ExtractTar reads a tar stream as WriteTar writes it, whose entries are
// all under name, and creates the tree it holds at dst (which must not
// exist). It admits bytes from outside, so it trusts nothing in them:
// only directories, regular files and symlinks are accepted; every entry
// must be name or below it, without . or .. elements, and come after the
// directory holding it (which must be an entry of the stream, never a
// symlink); no entry may come twice; and the files' sizes and symlinks'
// lengths may add up to at most maxSize bytes. Permissions are kept only
// as the tree hash keeps them (executable or not). On an error, what was
// extracted is left at dst for the caller to remove.
func ExtractTar(r io.Reader, dst, name string, maxSize int64) error {
	if !validTarName(name) {
		return fmt.Errorf("extracting %s: %q is not a relative path without . or .. elements", dst, name)
	}
	x := &extraction{dst: dst, name: name, left: maxSize, dirs: map[string]bool{}}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return fmt.Errorf("extracting %s: %w: the stream holds no entries", dst, errHostile)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("extracting %s: %w", dst, err)
		}
		if err := x.entry(hdr, tr, n == 0); err != nil {
			return fmt.Errorf("extracting %s: %s: %w", dst, hdr.Name, err)
		}
	}
}

// extraction is one ExtractTar in progress.
type extraction struct {
	dst, name string
	left      int64           // bytes that may still come
	dirs      map[string]bool // directories extracted, relative to name ("" is the root)
	done      bool            // the root was a file or symlink: nothing may follow
}

var errHostile = errors.New("refused")

func (x *extraction) entry(hdr *tar.Header, r io.Reader, first bool) error {
	entryName := strings.TrimSuffix(hdr.Name, "/")
	if hdr.Typeflag != tar.TypeDir && entryName != hdr.Name {
		return fmt.Errorf("%w: a name ending in / that is not a directory", errHostile)
	}
	var rel string
	switch {
	case entryName == x.name:
	case strings.HasPrefix(entryName, x.name+"/"):
		rel = entryName[len(x.name)+1:]
	default:
		return fmt.Errorf("%w: not under %s", errHostile, x.name)
	}
	if rel != "" && !validTarName(rel) {
		return fmt.Errorf("%w: not a path without empty, . or .. elements", errHostile)
	}
	if first != (rel == "") {
		return fmt.Errorf("%w: the root must come first, and once", errHostile)
	}
	if x.done {
		return fmt.Errorf("%w: the root is not a directory", errHostile)
	}
	if rel != "" && !x.dirs[path.Dir("/" + rel)[1:]] {
		return fmt.Errorf("%w: its directory is not an earlier entry", errHostile)
	}
	target := x.dst
	if rel != "" {
		target = x.dst + "/" + rel
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o755); err != nil {
			return err
		}
		x.dirs[rel] = true
		return nil
	case tar.TypeSymlink:
		if err := x.take(int64(len(hdr.Linkname))); err != nil {
			return err
		}
		x.done = rel == ""
		return os.Symlink(hdr.Linkname, target)
	case tar.TypeReg:
		if err := x.take(hdr.Size); err != nil {
			return err
		}
		x.done = rel == ""
		return extractFile(target, r, hdr.Size, hdr.Mode&0o111 != 0)
	}
	return fmt.Errorf("%w: type %q is not a directory, regular file or symlink", errHostile, hdr.Typeflag)
}

// take counts n more bytes against the limit.
func (x *extraction) take(n int64) error {
	if n < 0 || n > x.left {
		return fmt.Errorf("%w: more bytes than the %d announced", errHostile, x.left)
	}
	x.left -= n
	return nil
}

func extractFile(target string, r io.Reader, size int64, exec bool) error {
	mode := uint32(0o644)
	if exec {
		mode = 0o755
	}
	// O_EXCL|O_NOFOLLOW: never through a symlink, never over an entry.
	fd, err := unix.Open(target, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return &os.PathError{Op: "create", Path: target, Err: err}
	}
	f := os.NewFile(uintptr(fd), target)
	_, err = io.CopyN(f, r, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
