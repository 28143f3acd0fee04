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

// ErrRefused marks what ExtractTar refuses a stream for: bytes that are
// not a tree as WriteTar writes it.
var ErrRefused = errors.New("refused")

// DefaultMaxEntries is the most entries ExtractTar accepts.
const DefaultMaxEntries = 1 << 20

// ExtractTar reads a tar stream as WriteTar writes it, whose entries are
// all under name, and creates the tree it holds at dst (which must not
// exist), accepting at most DefaultMaxEntries entries and maxSize bytes
// of files' contents and symlinks' targets. It is ExtractTarLimits.
func ExtractTar(r io.Reader, dst, name string, maxSize int64) error {
	return ExtractTarLimits(r, dst, name, maxSize, DefaultMaxEntries)
}

// ExtractTarLimits is ExtractTar accepting at most maxEntries entries. It
// admits bytes from outside, so it trusts nothing in them (docs/trust.md,
// "Reading a layer"); a stream is refused (ErrRefused) unless:
//
//   - it holds only directories, regular files and symlinks: no hard
//     links, devices, fifos or other types;
//   - every entry is name or below it, name first, with no empty, . or
//     .. element, no element over 255 bytes, no NUL;
//   - each entry comes after its directory, which is an entry of the
//     stream (so never a symlink: nothing is written through one), no
//     entry comes twice, and nothing is below a root that is not a
//     directory;
//   - no name is a whiteout (.wh.*), which would delete other layers'
//     files were the stream unpacked as an image layer;
//   - no mode has bits beyond rwx (setuid, setgid, sticky), and no
//     extended header has records but path, linkpath and size (no
//     xattrs, so no file capabilities);
//   - the files' sizes and symlinks' lengths add up to at most maxSize,
//     and there are at most maxEntries entries.
//
// Permissions are kept only as the tree hash keeps them (executable or
// not); files are created with O_CREAT|O_EXCL|O_NOFOLLOW. An error names
// the entry, not dst: the caller says what was extracted where. On an
// error, what was extracted is left at dst for the caller to remove.
func ExtractTarLimits(r io.Reader, dst, name string, maxSize int64, maxEntries int) error {
	if !validTarName(name) {
		return fmt.Errorf("extracting %s: %q is not a relative path without . or .. elements", dst, name)
	}
	x := &extraction{dst: dst, name: name, left: maxSize, announced: maxSize, dirs: map[string]bool{}, seen: map[string]bool{}}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return fmt.Errorf("%w: the stream holds no entries", ErrRefused)
			}
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrRefused) {
				return err
			}
			return fmt.Errorf("%w: not a tar stream: %v", ErrRefused, err)
		}
		if n >= maxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrRefused, maxEntries)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", printable(hdr.Name), err)
		}
	}
}

// extraction is one ExtractTar in progress.
type extraction struct {
	dst, name string
	left      int64           // bytes that may still come
	announced int64           // bytes that may come in all
	dirs      map[string]bool // directories extracted, relative to name ("" is the root)
	seen      map[string]bool // every entry so far
	done      bool            // the root was a file or symlink: nothing may follow
}

// allowedPAX are the extended header records a stream may have: those
// Go's tar writer adds for long names, long link targets and large files.
var allowedPAX = map[string]bool{"path": true, "linkpath": true, "size": true}

func (x *extraction) entry(hdr *tar.Header, r io.Reader) error {
	if err := checkHeader(hdr); err != nil {
		return err
	}
	entryName := strings.TrimSuffix(hdr.Name, "/")
	if hdr.Typeflag != tar.TypeDir && entryName != hdr.Name {
		return fmt.Errorf("%w: a name ending in / that is not a directory", ErrRefused)
	}
	var rel string
	switch {
	case entryName == x.name:
	case strings.HasPrefix(entryName, x.name+"/"):
		rel = entryName[len(x.name)+1:]
	default:
		return fmt.Errorf("%w: outside %s, the tree this stream is of", ErrRefused, x.name)
	}
	if rel != "" {
		if err := checkRel(rel); err != nil {
			return err
		}
	}
	if x.seen[rel] {
		return fmt.Errorf("%w: a second entry of the same name", ErrRefused)
	}
	if (len(x.seen) == 0) != (rel == "") {
		return fmt.Errorf("%w: the root's own entry must come first", ErrRefused)
	}
	if x.done {
		return fmt.Errorf("%w: the root is a file or symlink, nothing can be below it", ErrRefused)
	}
	if rel != "" && !x.dirs[path.Dir("/" + rel)[1:]] {
		return fmt.Errorf("%w: its directory is not an earlier entry", ErrRefused)
	}
	x.seen[rel] = true
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
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 || len(hdr.Linkname) > 4096 {
			return fmt.Errorf("%w: a symlink to an empty or invalid target", ErrRefused)
		}
		if err := x.take(int64(len(hdr.Linkname))); err != nil {
			return err
		}
		x.done = rel == ""
		return os.Symlink(hdr.Linkname, target)
	}
	if err := x.take(hdr.Size); err != nil {
		return err
	}
	x.done = rel == ""
	return CreateFile(target, r, hdr.Size, hdr.Mode&0o111 != 0)
}

// checkHeader refuses every type but directories, regular files and
// symlinks, extended header records but allowedPAX, and mode bits beyond
// rwx.
func checkHeader(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		return fmt.Errorf("%w: a hard link (to %s); a tree holds each file's bytes under each name", ErrRefused, printable(hdr.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: a device file", ErrRefused)
	case tar.TypeFifo:
		return fmt.Errorf("%w: a fifo", ErrRefused)
	default:
		return fmt.Errorf("%w: entry type %q is not a directory, regular file or symlink", ErrRefused, hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if !allowedPAX[k] {
			return fmt.Errorf("%w: extended header record %q (only path, linkpath and size are allowed)", ErrRefused, printable(k))
		}
	}
	if hdr.Mode&^0o777 != 0 {
		what := "mode bits beyond rwx"
		switch {
		case hdr.Mode&0o4000 != 0:
			what = "the setuid bit"
		case hdr.Mode&0o2000 != 0:
			what = "the setgid bit"
		case hdr.Mode&0o1000 != 0:
			what = "the sticky bit"
		}
		return fmt.Errorf("%w: %s (mode %o)", ErrRefused, what, hdr.Mode)
	}
	return nil
}

// checkRel refuses a relative path that is not of ordinary names: an
// empty, . or .. element, a NUL, an element longer than 255 bytes, or a
// whiteout (.wh.*).
func checkRel(rel string) error {
	if len(rel) > 4096 || strings.IndexByte(rel, 0) >= 0 {
		return fmt.Errorf("%w: not a file name", ErrRefused)
	}
	for _, e := range strings.Split(rel, "/") {
		switch {
		case e == "" || e == "." || e == "..":
			return fmt.Errorf("%w: a path with an empty, . or .. element", ErrRefused)
		case len(e) > 255:
			return fmt.Errorf("%w: a name longer than 255 bytes", ErrRefused)
		case strings.HasPrefix(e, ".wh."):
			return fmt.Errorf("%w: a whiteout file (.wh.*), which deletes files of other layers", ErrRefused)
		}
	}
	return nil
}

// take counts n more bytes against the limit.
func (x *extraction) take(n int64) error {
	if n < 0 || n > x.left {
		return fmt.Errorf("%w: more bytes than the %d announced", ErrRefused, x.announced)
	}
	x.left -= n
	return nil
}

// CreateFile creates the regular file target (which must not exist, and
// is never opened through a symlink: O_CREAT|O_EXCL|O_NOFOLLOW) holding
// the next size bytes of r, executable if exec. Fewer bytes is refused
// (ErrRefused): the stream was truncated.
func CreateFile(target string, r io.Reader, size int64, exec bool) error {
	mode := uint32(0o644)
	if exec {
		mode = 0o755
	}
	fd, err := unix.Open(target, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return &os.PathError{Op: "create", Path: target, Err: err}
	}
	f := os.NewFile(uintptr(fd), target)
	n, err := io.CopyN(f, r, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: truncated after %d of %d bytes", ErrRefused, n, size)
	}
	return err
}

// printable quotes a name from a stream for a message, cut at 200 bytes.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}
