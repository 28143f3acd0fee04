// Package store owns the hash-keyed store: derivation and output hashes,
// store paths, the derivation and its canonical encoding, the derivation
// graph, the database (valid paths and their references, the derivations
// and builds it was asked for, generations, roots) and the records on
// disk it can be rebuilt from (RebuildDB), durability (what is synced
// before the database is told), the locks, closure queries, reference
// scanning, garbage collection, and Install, the one way a path becomes
// valid. It never imports CUE and never runs a build:
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
	"sync"
	"syscall"
	"time"
)

// Store is a hash-keyed store on disk. Its physical directory holds
//
//	store/<hash>-<name>   the outputs, read-only, mapped to /heph/store in builds
//	db.sqlite             the database (see schema)
//	info/, drv/, roots/,  the records on disk the database can be rebuilt
//	generations/          from (ondisk.go, RebuildDB)
//	profiles/NAME         a link to each profile's current generation object
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
	// SyncFS, if not nil, replaces syncfs(2) of the store's file system
	// (sync.go), for tests that see when syncs happen or make them fail.
	SyncFS func() error

	syncs groupSync
	// registrar registers the paths installs wait to register, in
	// groups (register.go).
	registrar registrar
	// stmts are the database's statements prepared so far, by query
	// (Store.stmt).
	stmts sync.Map
	// owner is the uid that owns Dir/store, and every path in it.
	owner int
	// staleBuilds removes the build directories of killed builds once.
	staleBuilds sync.Once
	// buildDirs is the pool of build directories (builddirs.go).
	buildDirs buildDirPool
	// background counts GC's removals of files still running
	// (GCOptions.Background).
	background sync.WaitGroup
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

// storeSubdirs are the directories Open makes.
var storeSubdirs = []string{"store", "logs", "tmp", "locks", infoDir, drvDir, rootsDir, generationsDir}

// Open opens the store in dir, creating it if needed. A store that holds
// paths but whose database is missing, empty or corrupt is a
// *DatabaseError: never an empty store that GC would wipe (RebuildDB
// rebuilds its database).
func Open(dir string) (*Store, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, sub := range storeSubdirs {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("opening store: %w", err)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "store"))
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	s := &Store{Dir: dir, Now: time.Now, owner: ownerOf(fi)}
	if err := s.checkDBFile(); err != nil {
		return nil, err
	}
	if s.db, err = openDB(dir); err != nil {
		return nil, s.classify(err)
	}
	if err := s.adoptRecords(); err != nil {
		s.db.Close()
		return nil, s.classify(err)
	}
	return s, nil
}

// ownerOf returns the uid that owns what fi describes.
func ownerOf(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return os.Geteuid()
}

// Owner returns the uid that owns the store's directory of paths
// (Dir/store): every entry of every path belongs to it.
func (s *Store) Owner() int { return s.owner }

// Close waits for GC's removals of files still running
// (GCOptions.Background), then closes the database.
func (s *Store) Close() error {
	s.background.Wait()
	return s.db.Close()
}

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
// (holding it exclusive) removes those a killed process left. A build's
// directory is named build-<its hash's first 16 characters>- and made
// under its output's lock; the first one a Store makes first removes
// those of builds that no process runs any more (removeStaleBuilds).
func (s *Store) TempDir(pattern string) (string, error) {
	if !slices.ContainsFunc(lockedTempPrefixes, func(p string) bool { return strings.HasPrefix(pattern, p) }) {
		return "", fmt.Errorf("making a temporary directory %q in the store: the name must start with one of %s", pattern, strings.Join(lockedTempPrefixes, ", "))
	}
	if strings.HasPrefix(pattern, "build-") {
		s.staleBuilds.Do(s.removeStaleBuilds)
	}
	dir, err := os.MkdirTemp(filepath.Join(s.Dir, "tmp"), pattern)
	return dir, s.classify(err)
}

// lockedTempPrefixes start the names of the temporary directories made in
// Dir/tmp under the GC lock (TempDir).
var lockedTempPrefixes = []string{"build-", "add-", "repair-", "generation-"}

func sortPaths(ps []Path) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
}
