package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"hephc.dev/hephc/fstree"
)

// The store's locks, and what keeps GC from deleting what others use.
//
// Dir/gc.lock is the store-wide GC lock. Whatever makes paths valid or
// relies on valid paths staying valid holds it shared for as long as it
// does (a realization, Add, Install's callers, verification, repair, a
// generation being recorded, a root being linked, an export); GC holds it
// exclusive. So GC waits until no realization runs, and a realization
// that starts while GC runs waits until GC is done: the paths a running
// realization uses are roots without being written down anywhere.
//
// The per-output locks (locks/<hash>.lock) are only ever taken under the
// GC lock, so GC, holding it exclusive, may delete the lock files of the
// paths it deletes.

// Lock is a held lock: a per-output lock (LockPath) or the GC lock.
type Lock struct {
	f    *os.File
	path Path // the output, for a per-output lock
	// unlocking, if not nil, runs before the lock is released (the GC
	// lock held shared: the build directories' pool, builddirs.go).
	unlocking func()
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	defer l.f.Close()
	if l.unlocking != nil {
		l.unlocking()
	}
	return unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
}

// LockPath takes the exclusive lock of p's output, waiting for another
// process that holds it (it is building or deleting p) or until ctx ends.
// Callers hold the GC lock (LockGC) shared: GC deletes the lock files of
// the paths it deletes.
func (s *Store) LockPath(ctx context.Context, p Path) (*Lock, error) {
	return s.LockPathWaiting(ctx, p, nil)
}

// LockPathWaiting is LockPath; waiting, if not nil, is called once if
// another process holds the lock, before this one waits for it.
func (s *Store) LockPathWaiting(ctx context.Context, p Path, waiting func()) (*Lock, error) {
	l, err := lockFile(ctx, filepath.Join(s.Dir, "locks", p.Hash.String()+".lock"), unix.LOCK_EX, waiting, "locking "+p.String())
	if err != nil {
		return nil, err
	}
	l.path = p
	return l, nil
}

// LockGC takes the store-wide GC lock, shared or exclusive, waiting for
// whoever holds it in the other mode or until ctx ends. One process may
// hold it shared more than once (through different calls), but must not
// call GC then: GC would wait for it forever. Hold it shared from before
// a realization until its outputs are rooted (a result link, a
// generation), or GC may take them in between.
func (s *Store) LockGC(ctx context.Context, exclusive bool) (*Lock, error) {
	return s.lockGC(ctx, exclusive, nil)
}

// lockGC is LockGC; waiting, if not nil, is called once if the lock is not
// free at once.
func (s *Store) lockGC(ctx context.Context, exclusive bool, waiting func()) (*Lock, error) {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	l, err := lockFile(ctx, filepath.Join(s.Dir, "gc.lock"), how, waiting, "taking the GC lock")
	if err == nil && !exclusive {
		l.unlocking = s.gcLocked()
	}
	return l, err
}

// lockFile takes a lock (flock how) of the file at path, made if need be;
// errors other than ctx's say what it was doing. waiting, if not nil, is
// called once if the lock is not free at once. A
// blocking flock is woken as soon as the lock is released (polling could
// keep missing short gaps between holders), but cannot be canceled: if
// ctx ends first, the goroutine gives the lock up whenever it gets it.
func lockFile(ctx context.Context, path string, how int, waiting func(), doing string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	fd := int(f.Fd())
	err = flock(fd, how|unix.LOCK_NB)
	if err == nil {
		return &Lock{f: f}, nil
	}
	if err != unix.EWOULDBLOCK {
		f.Close()
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	if waiting != nil {
		waiting()
	}
	got := make(chan error, 1)
	go func() { got <- flock(fd, how) }()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", doing, err)
		}
		return &Lock{f: f}, nil
	case <-ctx.Done():
		go func() {
			<-got
			f.Close()
		}()
		return nil, ctx.Err()
	}
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// removeStaleBuilds removes the directories in Dir/tmp of builds that no
// process runs any more, as a killed build leaves them. A build's
// directory, build-<its hash's first 16 characters>-<random>, is made and
// used only while the build holds its output's lock (LockPath), so a
// directory whose output lock is free (or gone) is a leftover; it is
// removed under that lock. The caller holds the GC lock shared; GC, which
// removes all of Dir/tmp, needs no such care.
func (s *Store) removeStaleBuilds() {
	tmp := filepath.Join(s.Dir, "tmp")
	names, err := readDirNames(tmp)
	if err != nil {
		return
	}
	for _, name := range names {
		if isPoolDir(name) {
			if s.stalePoolDir(name) {
				fstree.RemoveTree(filepath.Join(tmp, name))
			}
			continue
		}
		rest, ok := strings.CutPrefix(name, "build-")
		if !ok || len(rest) < 17 || rest[16] != '-' {
			continue
		}
		locks, err := filepath.Glob(filepath.Join(s.Dir, "locks", rest[:16]+"*.lock"))
		if err != nil {
			continue
		}
		var held []*os.File
		free := true
		for _, l := range locks {
			f, err := os.OpenFile(l, os.O_RDWR, 0)
			if err != nil {
				continue // gone: no one holds it
			}
			held = append(held, f)
			if flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
				free = false
				break
			}
		}
		if free {
			fstree.RemoveTree(filepath.Join(tmp, name))
		}
		for _, f := range held {
			f.Close() // which releases the lock
		}
	}
}
