package modfetch

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
)

// GoSum is what a go.sum file lists: the h1: sums of module zips, and of
// go.mod files (sorted by module path and version), each module version
// once.
type GoSum struct {
	Zips   map[module.Version]string
	GoMods []GoModSum
}

// GoModSum is the sum of one go.mod file, as a go.sum lists it.
type GoModSum struct {
	Mod module.Version
	// EscPath and EscVersion are the module's path and version escaped,
	// as a module proxy and a module cache name them.
	EscPath, EscVersion string
	Sum                 string // h1:
}

func (s GoModSum) String() string { return s.Mod.String() }

// File is where the go.mod file lies below a module cache's download
// directory (and below ModFilesDir): ESCAPED-PATH/@v/ESCAPED-VERSION.mod,
// slash-separated.
func (s GoModSum) File() string { return s.EscPath + "/@v/" + s.EscVersion + ".mod" }

// ParseGoSum reads a go.sum file. Each line is MODULE VERSION SUM or
// MODULE VERSION/go.mod SUM with an h1: sum; a module version listed
// twice with different sums is an error.
func ParseGoSum(r io.Reader) (*GoSum, error) {
	gs := &GoSum{Zips: make(map[module.Version]string)}
	mods := make(map[module.Version]string)
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want MODULE VERSION SUM, got %q", line, sc.Text())
		}
		if !strings.HasPrefix(f[2], "h1:") {
			return nil, fmt.Errorf("line %d: %s: want an h1: sum", line, f[2])
		}
		ver, isMod := strings.CutSuffix(f[1], "/go.mod")
		mv := module.Version{Path: f[0], Version: ver}
		seen := gs.Zips
		if isMod {
			seen = mods
		}
		if prev, dup := seen[mv]; dup {
			if prev != f[2] {
				what := mv.String()
				if isMod {
					what += "/go.mod"
				}
				return nil, fmt.Errorf("line %d: %s has two sums, %s and %s", line, what, prev, f[2])
			}
			continue
		}
		seen[mv] = f[2]
		if !isMod {
			continue
		}
		ep, err := module.EscapePath(mv.Path)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		ev, err := module.EscapeVersion(mv.Version)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		gs.GoMods = append(gs.GoMods, GoModSum{Mod: mv, EscPath: ep, EscVersion: ev, Sum: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(gs.GoMods, func(a, b GoModSum) int {
		if c := strings.Compare(a.Mod.Path, b.Mod.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Mod.Version, b.Mod.Version)
	})
	return gs, nil
}

// HashGoMod is the h1: sum of a go.mod file, as go.sum records it.
func HashGoMod(b []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}
