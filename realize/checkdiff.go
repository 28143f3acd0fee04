package realize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
)

// Difference is one way a rebuilt tree differs from the stored one.
type Difference struct {
	// File is the entry, relative to the path's root ("." is the root).
	File string
	// What says how it differs: DiffContent, DiffType, DiffExec,
	// DiffTarget, DiffOnlyStored or DiffOnlyRebuilt.
	What string
	// Offset is, for DiffContent, the first byte that differs (the
	// shorter file's size, when one is the other's beginning).
	Offset int64
}

// The ways two trees differ at one entry.
const (
	DiffContent     = "content"
	DiffType        = "type"
	DiffExec        = "executable bit"
	DiffTarget      = "symlink target"
	DiffOnlyStored  = "only in the store"
	DiffOnlyRebuilt = "only in the rebuild"
)

func (d Difference) String() string {
	if d.What == DiffContent {
		return fmt.Sprintf("%s: differs from byte %d", d.File, d.Offset)
	}
	return fmt.Sprintf("%s: %s", d.File, d.What)
}

// DiffTrees lists how the tree at b differs from the tree at a in what
// the tree hash covers (entry names and types, file contents, the
// executable bit, symlink targets), sorted by file; entries below a
// directory present in one tree only are not listed one by one. Neither
// root is followed if it is a symlink.
func DiffTrees(a, b string) ([]Difference, error) {
	var out []Difference
	err := diffEntry(a, b, ".", &out)
	return out, err
}

func diffEntry(a, b, rel string, out *[]Difference) error {
	fa, err := os.Lstat(a)
	if err != nil {
		return err
	}
	fb, err := os.Lstat(b)
	if err != nil {
		return err
	}
	ta, tb := fa.Mode().Type(), fb.Mode().Type()
	switch {
	case ta != tb:
		*out = append(*out, Difference{File: rel, What: DiffType})
	case ta == fs.ModeDir:
		return diffDirs(a, b, rel, out)
	case ta == fs.ModeSymlink:
		la, err := os.Readlink(a)
		if err != nil {
			return err
		}
		lb, err := os.Readlink(b)
		if err != nil {
			return err
		}
		if la != lb {
			*out = append(*out, Difference{File: rel, What: DiffTarget})
		}
	case ta.IsRegular():
		off, same, err := firstDifference(a, b)
		if err != nil {
			return err
		}
		if !same {
			*out = append(*out, Difference{File: rel, What: DiffContent, Offset: off})
		}
		if (fa.Mode()&0o111 != 0) != (fb.Mode()&0o111 != 0) {
			*out = append(*out, Difference{File: rel, What: DiffExec})
		}
	}
	return nil
}

func diffDirs(a, b, rel string, out *[]Difference) error {
	ea, err := dirNames(a)
	if err != nil {
		return err
	}
	eb, err := dirNames(b)
	if err != nil {
		return err
	}
	inA := make(map[string]bool, len(ea))
	for _, n := range ea {
		inA[n] = true
	}
	inB := make(map[string]bool, len(eb))
	for _, n := range eb {
		inB[n] = true
	}
	names := slices.Compact(slices.Sorted(slices.Values(append(ea, eb...))))
	for _, n := range names {
		r := n
		if rel != "." {
			r = path.Join(rel, n)
		}
		switch {
		case !inB[n]:
			*out = append(*out, Difference{File: r, What: DiffOnlyStored})
		case !inA[n]:
			*out = append(*out, Difference{File: r, What: DiffOnlyRebuilt})
		default:
			if err := diffEntry(a+"/"+n, b+"/"+n, r, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func dirNames(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	return names, nil
}

// firstDifference compares the files a and b: the offset of the first
// byte that differs, or whether they are the same.
func firstDifference(a, b string) (offset int64, same bool, err error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if erra != nil && !isEOF(erra) {
			return 0, false, erra
		}
		if errb != nil && !isEOF(errb) {
			return 0, false, errb
		}
		n := min(na, nb)
		if !bytes.Equal(ba[:n], bb[:n]) {
			for i := range n {
				if ba[i] != bb[i] {
					return offset + int64(i), false, nil
				}
			}
		}
		if na != nb {
			return offset + int64(n), false, nil
		}
		if na < len(ba) {
			return 0, true, nil
		}
		offset += int64(n)
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }
