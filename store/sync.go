package store

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Durability. What the database says is only as good as what is on disk
// when the database says it: a path is registered only after its files,
// its directories, the rename that put it in place and its record
// (info/<hash>.json) are durable, and what GC deletes is unregistered
// durably before its files go. Both take one syncfs(2) of the store's
// file system (Store.SyncFS), shared by whatever waits for one at the
// same time (groupSync): builds that end together pay for one sync.
//
// The database runs in WAL mode with synchronous=NORMAL: after a power
// loss it holds a prefix of its transactions, never a torn one, but the
// last may be lost. Losing a registration is harmless (its content is
// there, unregistered: the next Install or GC removes it, or
// RebuildDB registers it); losing the row of a generation or a root
// whose link already exists, or an unregistration whose files are gone,
// is not. So those transactions are followed by a sync before anything
// relies on them: a sync writes the WAL out too.

// syncfs makes everything written to the file system of dir durable.
func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing the store's file system: %w", err)
	}
	defer f.Close()
	for {
		err = unix.Syncfs(int(f.Fd()))
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("syncing the store's file system (%s): %w", dir, err)
	}
	return nil
}

// groupSync runs one sync for every caller that waits while none runs:
// a caller needs a sync that starts after it calls, so it waits for the
// one running to end and then for the next, which it starts itself or
// shares with those that came meanwhile.
type groupSync struct {
	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64 // syncs started
	done    uint64 // syncs ended (the last one started, once it ends)
	err     error  // of the sync that ended last
}

// sync waits for a sync started after it was called and returns its
// error; do is the sync.
func (g *groupSync) sync(do func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	// The running sync may have started before what the caller wrote:
	// the caller needs the next one.
	need := g.started + 1
	for {
		if g.done >= need {
			// A sync that started after the call ended; a later one may
			// have ended since, which serves as well.
			return g.err
		}
		if !g.running {
			g.running = true
			g.started++
			n := g.started
			g.mu.Unlock()
			err := do()
			g.mu.Lock()
			g.running = false
			g.done, g.err = n, err
			g.cond.Broadcast()
			return err
		}
		g.cond.Wait()
	}
}

// sync makes everything written to the store's file system so far
// durable, sharing a sync with whoever else in this process needs one.
func (s *Store) sync() error {
	return s.syncs.sync(func() error {
		if s.SyncFS == nil {
			return syncfs(s.Dir)
		}
		return s.SyncFS()
	})
}

// Sync makes everything written to the store's file system so far
// durable (syncfs(2), shared with whoever else in this process needs one
// at the same time): for what is written into the store's directory
// outside Install, such as the profile links.
func (s *Store) Sync() error { return s.sync() }
