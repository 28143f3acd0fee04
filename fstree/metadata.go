package fstree

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// AnyOwner, as the uid of CheckCanonical and CanonicalizeAs, leaves
// owners out.
const AnyOwner = -1

// Deviation is an entry of a tree whose permissions or owner are not what
// a canonical tree's are (Canonicalize, CanonicalizeAs).
type Deviation struct {
	// Rel is the entry's path relative to the root, "." for the root.
	Rel string
	// Perm is the entry's permission and special bits (07777) as they
	// are, WantPerm the canonical ones; equal when only the owner is
	// wrong. Symlinks' are never checked.
	Perm, WantPerm uint32
	// UID is the entry's owner and WantUID the one it should have; equal
	// when only the permissions are wrong.
	UID, WantUID int
}

func (d Deviation) String() string {
	var what []string
	if d.Perm != d.WantPerm {
		var bad []string
		if d.Perm&unix.S_ISUID != 0 {
			bad = append(bad, "setuid")
		}
		if d.Perm&unix.S_ISGID != 0 {
			bad = append(bad, "setgid")
		}
		if d.Perm&unix.S_ISVTX != 0 {
			bad = append(bad, "sticky")
		}
		switch w := d.Perm & 0o022; w {
		case 0o022:
			bad = append(bad, "writable by group and others")
		case 0o020:
			bad = append(bad, "writable by its group")
		case 0o002:
			bad = append(bad, "writable by others")
		}
		if d.Perm&0o200 != 0 {
			bad = append(bad, "writable by its owner")
		}
		m := fmt.Sprintf("mode %04o", d.Perm)
		if len(bad) > 0 {
			m += " (" + strings.Join(bad, ", ") + ")"
		}
		what = append(what, fmt.Sprintf("%s, want %04o", m, d.WantPerm))
	}
	if d.UID != d.WantUID {
		what = append(what, fmt.Sprintf("owned by uid %d, want %d", d.UID, d.WantUID))
	}
	return d.Rel + ": " + strings.Join(what, "; ")
}

// CheckCanonical returns, sorted by Rel, the entries of the tree at root
// whose permissions are not those Canonicalize gives (0444 or 0555 for a
// file, 0555 for a directory: no setuid, setgid or sticky bit, writable by
// no one) or, unless uid is AnyOwner, whose owner is not uid. A file with
// any exec bit should be 0555, since the tree hash keeps that bit. It
// never follows a symlink; a symlink's permissions mean nothing and are
// not checked, its owner is. Entries of other types are errors naming
// them, as for HashTree.
func CheckCanonical(root string, uid int) ([]Deviation, error) {
	var out []Deviation
	var walk func(path, rel string) error
	walk = func(path, rel string) error {
		var st unix.Stat_t
		if err := fstatatNoFollow(unix.AT_FDCWD, path, path, &st); err != nil {
			return err
		}
		d := Deviation{Rel: rel, Perm: st.Mode & 0o7777, UID: int(st.Uid), WantUID: int(st.Uid)}
		d.WantPerm = d.Perm
		if uid != AnyOwner {
			d.WantUID = uid
		}
		typ := st.Mode & unix.S_IFMT
		switch typ {
		case unix.S_IFLNK:
		case unix.S_IFREG:
			d.WantPerm = 0o444
			if st.Mode&0o111 != 0 {
				d.WantPerm = 0o555
			}
		case unix.S_IFDIR:
			d.WantPerm = 0o555
		default:
			return fmt.Errorf("%s: unsupported file type %s (only regular files, directories and symlinks may be in an output)",
				rel, describeType(unixType(st.Mode)))
		}
		if d.Perm != d.WantPerm || d.UID != d.WantUID {
			out = append(out, d)
		}
		if typ != unix.S_IFDIR {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		slices.Sort(names)
		for _, n := range names {
			if err := walk(path+"/"+n, joinRel(rel, n)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(filepath.Clean(root), "."); err != nil {
		return nil, fmt.Errorf("checking the modes of %s: %w", root, err)
	}
	slices.SortFunc(out, func(a, b Deviation) int { return strings.Compare(a.Rel, b.Rel) })
	return out, nil
}
