package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// errRefused marks what a hostile or broken archive is refused for.
var errRefused = errors.New("refused")

// extraction is one layer being extracted.
type extraction struct {
	name, dst string
	lim       LayerLimits
	dirs      map[string]bool // directories made, relative to name ("" is the root)
	seen      map[string]bool // every entry so far
	leaf      bool            // the root is a file or symlink: nothing may follow
	left      int64           // bytes of files and symlink targets that may still come
}

// extract reads every entry of tr, each of which must be name or below
// it, into dst.
// size is the total of the files' sizes and the symlinks' target lengths
// that the manifest announces: more is refused.
func extract(tr *tar.Reader, name, dst string, size int64, lim LayerLimits) error {
	x := &extraction{name: name, dst: dst, lim: lim, dirs: map[string]bool{}, seen: map[string]bool{}, left: size}
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return fmt.Errorf("%w: the layer holds no entries", errRefused)
			}
			return nil
		}
		if err != nil {
			if errors.Is(err, errRefused) {
				return err
			}
			return fmt.Errorf("%w: not a tar stream: %v", errRefused, err)
		}
		if n >= lim.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", errRefused, lim.MaxEntries)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", printable(hdr.Name), err)
		}
	}
}

// allowedPAX are the extended header records a layer may have: those Go's
// tar writer adds for long names, long link targets and large files.
var allowedPAX = map[string]bool{"path": true, "linkpath": true, "size": true}

func (x *extraction) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		return fmt.Errorf("%w: a hard link (to %s); a layer holds each file's bytes under each name", errRefused, printable(hdr.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: a device file", errRefused)
	case tar.TypeFifo:
		return fmt.Errorf("%w: a fifo", errRefused)
	default:
		return fmt.Errorf("%w: entry type %q is not a directory, regular file or symlink", errRefused, hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if !allowedPAX[k] {
			return fmt.Errorf("%w: extended header record %q (only path, linkpath and size are allowed)", errRefused, k)
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
		return fmt.Errorf("%w: %s (mode %o)", errRefused, what, hdr.Mode)
	}
	entry := hdr.Name
	if hdr.Typeflag == tar.TypeDir {
		entry = strings.TrimSuffix(entry, "/")
	} else if strings.HasSuffix(entry, "/") {
		return fmt.Errorf("%w: a name ending in / that is not a directory", errRefused)
	}
	var rel string
	switch {
	case entry == x.name:
	case strings.HasPrefix(entry, x.name+"/"):
		rel = entry[len(x.name)+1:]
	default:
		return fmt.Errorf("%w: outside %s, the store path this layer is for", errRefused, x.name)
	}
	if rel != "" {
		if err := checkRel(rel); err != nil {
			return err
		}
	}
	if x.seen[rel] {
		return fmt.Errorf("%w: a second entry of the same name", errRefused)
	}
	if (len(x.seen) == 0) != (rel == "") {
		return fmt.Errorf("%w: the store path's own entry must come first", errRefused)
	}
	if x.leaf {
		return fmt.Errorf("%w: the store path is a file or symlink, nothing can be below it", errRefused)
	}
	if rel != "" && !x.dirs[path.Dir("/" + rel)[1:]] {
		return fmt.Errorf("%w: its directory is not an earlier entry", errRefused)
	}
	x.seen[rel] = true
	target := x.dst
	if rel != "" {
		target = x.dst + "/" + rel
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		x.dirs[rel] = true
		return os.Mkdir(target, 0o755)
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 || len(hdr.Linkname) > 4096 {
			return fmt.Errorf("%w: a symlink to an empty or invalid target", errRefused)
		}
		if err := x.take(int64(len(hdr.Linkname))); err != nil {
			return err
		}
		x.leaf = rel == ""
		return os.Symlink(hdr.Linkname, target)
	}
	x.leaf = rel == ""
	if err := x.take(hdr.Size); err != nil {
		return err
	}
	return writeFile(target, r, hdr.Size, hdr.Mode&0o111 != 0)
}

// take counts n more bytes of content against the size announced.
func (x *extraction) take(n int64) error {
	if n < 0 || n > x.left {
		return fmt.Errorf("%w: more bytes than the manifest's size says", errRefused)
	}
	x.left -= n
	return nil
}

// checkRel reports whether rel is a relative path of ordinary names: no
// empty, . or .. elements, no NUL, no element longer than 255 bytes, and
// no whiteout (.wh.*), which would delete files when layers are unpacked
// one over another.
func checkRel(rel string) error {
	if len(rel) > 4096 || strings.IndexByte(rel, 0) >= 0 {
		return fmt.Errorf("%w: not a file name", errRefused)
	}
	for _, e := range strings.Split(rel, "/") {
		switch {
		case e == "" || e == "." || e == "..":
			return fmt.Errorf("%w: a path with an empty, . or .. element", errRefused)
		case len(e) > 255:
			return fmt.Errorf("%w: a name longer than 255 bytes", errRefused)
		case strings.HasPrefix(e, ".wh."):
			return fmt.Errorf("%w: a whiteout file (.wh.*), which deletes files of other layers", errRefused)
		}
	}
	return nil
}

// writeFile creates the regular file target with size bytes of r, never
// through a symlink and never over an existing entry.
func writeFile(target string, r io.Reader, size int64, exec bool) error {
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
		return fmt.Errorf("%w: truncated after %d of %d bytes", errRefused, n, size)
	}
	return err
}

// printable quotes a name from an archive for a message.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}
