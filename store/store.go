// Package store owns the hash-keyed store: derivation and output hashes,
// store paths, the derivation and its canonical encoding, the derivation
// graph, the database (valid paths and their references, the derivations
// and builds it was asked for, generations, roots), the locks, closure
// queries, reference scanning, garbage collection, and Install, the one
// way a path becomes valid. It never imports CUE and never runs a build:
// realizing a graph is package realize's.
package store

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Store is a hash-keyed store on disk. Its physical directory holds
//
//	store/<hash>-<name>   the outputs, read-only, mapped to /heph/store in builds
//	db.sqlite             the database (see schema)
//	logs/<hh>/<hash>.log  build logs, fanned out by the hash's first two characters
//	tmp/                  builds in progress and paths being deleted
//	locks/<hash>.lock     one lock per output, held while it is built or deleted
//
// Several hephc processes may use one store at once: the database
// serializes writers, and a per-output lock makes sure each derivation is
// built once.
type Store struct {
	Dir string
	db  *sql.DB
	// Now is the clock registration times come from.
	Now func() time.Time
}

// DefaultDir is the store directory when none is given: $XDG_DATA_HOME/hephc,
// else ~/.local/share/hephc.
func DefaultDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "hephc"), nil
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("finding the default store: %w (set --store or HEPHC_STORE)", err)
		}
	}
	return filepath.Join(home, ".local", "share", "hephc"), nil
}

// Open opens the store in dir, creating it if needed.
func Open(dir string) (*Store, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"store", "logs", "tmp", "locks"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("opening store: %w", err)
		}
	}
	db, err := openDB(dir)
	if err != nil {
		return nil, err
	}
	return &Store{Dir: dir, db: db, Now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Physical returns where p's content lives on this machine.
func (s *Store) Physical(p Path) string { return filepath.Join(s.Dir, "store", p.Base()) }

// LogPath returns where the build log of the derivation h is kept.
func (s *Store) LogPath(h DrvHash) string {
	hs := h.String()
	return filepath.Join(s.Dir, "logs", hs[:2], hs+".log")
}

// TempDir makes a new directory in Dir/tmp for content on its way into
// the store (see Install), named pattern as os.MkdirTemp names it. The
// pattern must start with one of build-, add-, repair- or generation-:
// such directories are made only under the GC lock, held shared, so GC
// (holding it exclusive) removes those a killed process left.
func (s *Store) TempDir(pattern string) (string, error) {
	if !slices.ContainsFunc(lockedTempPrefixes, func(p string) bool { return strings.HasPrefix(pattern, p) }) {
		return "", fmt.Errorf("making a temporary directory %q in the store: the name must start with one of %s", pattern, strings.Join(lockedTempPrefixes, ", "))
	}
	return os.MkdirTemp(filepath.Join(s.Dir, "tmp"), pattern)
}

// lockedTempPrefixes start the names of the temporary directories made in
// Dir/tmp under the GC lock (TempDir).
var lockedTempPrefixes = []string{"build-", "add-", "repair-", "generation-"}

func sortPaths(ps []Path) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
}
