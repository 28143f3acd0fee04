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

	"hephc.dev/hephc/fstree"
)

// deleteGarbage unregisters the paths of order (referrers first), gcBatch
// per transaction, and after each transaction has workers remove their
// trees (and lock files); then the leftovers go the same way. Removing is
// the slow part (file system metadata, in the kernel), so it runs while
// the next batch is unregistered, with more workers than cores.
//
// A tree is removed where it is, not moved aside first: once its path is
// unregistered nothing trusts it, and what a killed GC leaves half
// removed, the next GC removes (or a realization, before it builds the
// path again). On a slow disk a rename per path costs as much again as
// everything else GC does (BenchmarkGC).
func (c *collector) deleteGarbage(ctx context.Context, g *refGraph, order []int32, leftovers []string) error {
	rm := fstree.NewRemover(4 * runtime.GOMAXPROCS(0))
	err := c.unregisterAndRemove(ctx, g, order, leftovers, rm)
	// On an error, what was unregistered is removed all the same.
	if werr := rm.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("collecting garbage: %w", werr)
	}
	return err
}

func (c *collector) unregisterAndRemove(ctx context.Context, g *refGraph, order []int32, leftovers []string, rm *fstree.Remover) error {
	storeDir := filepath.Join(c.s.Dir, "store")
	locks := filepath.Join(c.s.Dir, "locks")
	infos := filepath.Join(c.s.Dir, infoDir)
	for start := 0; start < len(order); start += gcBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := order[start:min(start+gcBatch, len(order))]
		if err := c.unregister(ctx, g, batch); err != nil {
			return err
		}
		// The unregistration is durable before any file goes: after a
		// power loss the database may lose its last transactions, and
		// must not list a path whose files are gone.
		if err := c.s.sync(); err != nil {
			return fmt.Errorf("collecting garbage: %w", err)
		}
		for _, i := range batch {
			base := g.paths[i][len(Dir)+1:]
			// The record first, here: a tree half removed never has one.
			if err := os.Remove(filepath.Join(infos, base[:HashStringLen]+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("collecting garbage: %w", err)
			}
			rm.Remove(filepath.Join(storeDir, base))
			// Nobody holds or waits for a per-output lock now.
			rm.Remove(filepath.Join(locks, base[:HashStringLen]+".lock"))
			// Its attestations (package trust keeps them in this
			// directory, trust.DirName) vouch for nothing any more.
			rm.Remove(filepath.Join(c.s.Dir, "attestations", base))
		}
	}
	for _, path := range leftovers {
		rm.Remove(path)
	}
	return nil
}

// unregister deletes the rows of batch, which no path outside it that
// remains valid refers to, in one transaction.
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
