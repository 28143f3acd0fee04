package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"hephc.dev/hephc/fstree"
)

// A pool of build directories. A build lays out what its sandbox mounts
// in a directory of Dir/tmp (its output's store directory, /build,
// /.heph, the overlay's work directory). Making and removing those
// directories for every build cost more than the build on a disk where
// a new inode is slow to find and a freed block is discarded at once
// (ext4 without a journal, mounted with discard: 1.5–2.5 ms an rmdir).
// So a build takes a directory from its Store's pool (TakeBuildDir) and
// gives it back emptied (Put): the pool holds at most as many as ran at
// once. A pooled directory is used by one build at a time.
//
// Like every directory of Dir/tmp, they exist only while this process
// holds the GC lock shared (LockGC, through this Store): the last Unlock
// of it removes them, so GC, which removes all of Dir/tmp, never sees
// one in use. Each is kept open and flock'ed exclusive by the process that
// made it, so the first build of another process removes those a killed
// process left (removeStaleBuilds), whose locks died with it.

// buildPoolPrefix starts a pooled build directory's name.
const buildPoolPrefix = "build-pool-"

// BuildDir is a build directory of the pool.
type BuildDir struct {
	// Path is the directory. New: it was just made, and is empty.
	Path string
	New  bool
	f    *os.File // Path, open, flock'ed exclusive
	s    *Store
}

// buildDirPool is a Store's pool.
type buildDirPool struct {
	mu   sync.Mutex
	free []*BuildDir
	// gcHolders counts the shared GC locks held through this Store.
	gcHolders int
}

// TakeBuildDir returns an empty build directory of the pool, or a new
// one. The caller holds the GC lock shared through s, and gives the
// directory back, emptied, with Put, or removes it with Discard.
func (s *Store) TakeBuildDir() (*BuildDir, error) {
	p := &s.buildDirs
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		d := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		d.New = false
		return d, nil
	}
	p.mu.Unlock()
	path, err := s.TempDir(buildPoolPrefix)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err == nil {
		err = flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		fstree.RemoveTree(path)
		return nil, fmt.Errorf("locking the build directory %s: %w", path, err)
	}
	return &BuildDir{Path: path, New: true, f: f, s: s}, nil
}

// Put gives d back to the pool; the caller has emptied it but for the
// directories it lays out in every build dir, which it has emptied. If
// this Store holds the GC lock no more, d is removed.
func (d *BuildDir) Put() {
	p := &d.s.buildDirs
	p.mu.Lock()
	if p.gcHolders > 0 {
		p.free = append(p.free, d)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	d.Discard()
}

// Discard removes d.
func (d *BuildDir) Discard() error {
	err := fstree.RemoveTree(d.Path)
	d.f.Close()
	return err
}

// gcLocked counts a shared GC lock taken through s, and returns what its
// Unlock calls: the last removes the pool's directories.
func (s *Store) gcLocked() func() {
	p := &s.buildDirs
	p.mu.Lock()
	p.gcHolders++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.gcHolders--
		var free []*BuildDir
		if p.gcHolders == 0 {
			free, p.free = p.free, nil
		}
		p.mu.Unlock()
		for _, d := range free {
			d.Discard()
		}
	}
}

// stalePoolDir reports whether the pooled build directory name in
// Dir/tmp is a leftover: no process holds its lock. A directory made but
// not locked yet is locked within microseconds, by a process holding
// the GC lock shared, like the caller: it is left alone if younger than
// a minute.
func (s *Store) stalePoolDir(name string) bool {
	path := filepath.Join(s.Dir, "tmp", name)
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || time.Now().Unix()-st.Mtim.Sec < 60 {
		return false
	}
	return flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// isPoolDir reports whether name, in Dir/tmp, is a pooled build directory.
func isPoolDir(name string) bool { return strings.HasPrefix(name, buildPoolPrefix) }
