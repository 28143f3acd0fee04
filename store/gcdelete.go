package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"hephc.dev/hephc/fstree"
)

// removeInBackground removes the files of the paths of order, which are
// unregistered (unregisterDurably), and the leftovers: for each path its
// record first, then its tree, its lock file and its attestations. It
// runs on a goroutine of its own that holds lock, the GC lock taken
// exclusive, until it is done, and releases it then; the result says when.
//
// A tree is removed where it is, not moved aside first: once its path is
// unregistered nothing trusts it, and what a killed GC leaves half
// removed, the next GC removes (or a realization, before it builds the
// path again: it can only start once the GC lock is free). On a slow disk
// a rename per path costs as much again as everything else GC does
// (BenchmarkGC).
func (s *Store) removeInBackground(ctx context.Context, g *refGraph, order []int32, leftovers []string, lock *Lock) *gcRemoval {
	r := &gcRemoval{done: make(chan struct{})}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		defer close(r.done)
		defer lock.Unlock()
		r.err = s.removeGarbage(ctx, g, order, leftovers)
	}()
	return r
}

// gcRemoval is a GC's removal of files, running or done.
type gcRemoval struct {
	done chan struct{}
	err  error
}

// unregisterDurably unregisters order in one transaction, then syncs the
// store's file system: after a power loss the database may lose its last
// transactions, and must not list a path whose files are gone.
func (c *collector) unregisterDurably(ctx context.Context, g *refGraph, order []int32) error {
	if len(order) == 0 {
		return nil
	}
	if err := c.unregister(ctx, g, order); err != nil {
		return err
	}
	if err := c.s.sync(); err != nil {
		return fmt.Errorf("collecting garbage: %w", err)
	}
	return nil
}

// removeGarbage removes the files of the unregistered paths of order and
// the leftovers, with 4 workers a core: unlink and rmdir, in the kernel,
// are the slow part, and run best with more workers than cores. It stops queueing when ctx ends;
// what it leaves, the next GC removes.
func (s *Store) removeGarbage(ctx context.Context, g *refGraph, order []int32, leftovers []string) error {
	storeDir := filepath.Join(s.Dir, "store")
	locks := filepath.Join(s.Dir, "locks")
	infos := filepath.Join(s.Dir, infoDir)
	attestations := filepath.Join(s.Dir, "attestations")
	testResults := filepath.Join(s.Dir, TestResultsDir)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = fmt.Errorf("collecting garbage: %w", err)
		}
		mu.Unlock()
	}
	jobs := make(chan int, 1024)
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				if k >= len(order) {
					if err := fstree.RemoveTree(leftovers[k-len(order)]); err != nil {
						fail(err)
					}
					continue
				}
				base := g.paths[order[k]][len(Dir)+1:]
				hash := base[:HashStringLen]
				// The record first: a tree half removed never has one.
				if err := os.Remove(filepath.Join(infos, hash+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
					fail(err)
					continue
				}
				if err := fstree.RemoveTree(filepath.Join(storeDir, base)); err != nil {
					fail(err)
				}
				// Nobody holds or waits for a per-output lock now.
				if err := os.Remove(filepath.Join(locks, hash+".lock")); err != nil && !errors.Is(err, fs.ErrNotExist) {
					fail(err)
				}
				// Its attestations (package trust keeps them in this
				// directory, trust.DirName) vouch for nothing any more.
				if err := fstree.RemoveTree(filepath.Join(attestations, base)); err != nil {
					fail(err)
				}
				// And so do the test results about it (a tested path goes
				// only once no other tested path keeps the test's output).
				if err := fstree.RemoveTree(filepath.Join(testResults, base)); err != nil {
					fail(err)
				}
			}
		}()
	}
	var err error
	for k := range len(order) + len(leftovers) {
		if err = ctx.Err(); err != nil {
			break
		}
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return err
}

// unregister deletes the rows of batch, which no path outside it that
// remains valid refers to, in one transaction: GC's whole garbage at once.
//
// It does what the foreign keys of refs would do (cascade from the
// referrer, refuse to delete a path still referred to), but for the batch
// at once: the batch's references go first, then, if no reference to the
// batch is left, its paths. Row by row, the foreign keys cost SQLite
// nearly twice as much.
func (c *collector) unregister(ctx context.Context, g *refGraph, batch []int32) error {
	var ids strings.Builder
	ids.WriteByte('[')
	for k, i := range batch {
		if k > 0 {
			ids.WriteByte(',')
		}
		ids.WriteString(strconv.FormatInt(g.ids[i], 10))
	}
	ids.WriteByte(']')
	// Outside a transaction: inside, the pragma does nothing.
	if _, err := c.db.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return fmt.Errorf("unregistering garbage: %w", err)
	}
	defer c.db.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`)
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("unregistering garbage: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM refs WHERE referrer IN (SELECT value FROM json_each(?))`, ids.String()); err != nil {
		return fmt.Errorf("unregistering garbage: %w", err)
	}
	var left int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM refs WHERE reference IN (SELECT value FROM json_each(?))`, ids.String()).Scan(&left); err != nil || left > 0 {
		return fmt.Errorf("unregistering garbage: %d references to it are left (%v)", left, err)
	}
	r, err := tx.ExecContext(ctx, `DELETE FROM paths WHERE id IN (SELECT value FROM json_each(?))`, ids.String())
	if err != nil {
		return fmt.Errorf("unregistering garbage: %w", err)
	}
	if n, err := r.RowsAffected(); err != nil || n != int64(len(batch)) {
		return fmt.Errorf("unregistering garbage: deleted %d rows, want %d (%v)", n, len(batch), err)
	}
	return tx.Commit()
}
