package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// Registration in groups. Builds that end while a sync or a registering
// transaction is under way do not each pay for their own: the installs
// waiting when one group ends are registered together, by one of them,
// with one syncfs and one transaction. Each path is registered only after
// the sync that started after its record was written (so its content,
// the rename that put it in place and its record are durable), and each
// gets its own result: a member that cannot be registered (a reference
// that is not valid) fails alone, and the rest of its group is committed.

// registrar queues the registrations waiting for a group.
type registrar struct {
	mu      sync.Mutex
	cond    *sync.Cond
	running bool // a group is being registered
	queue   []*registration
}

// registration is one path waiting to be registered, and its result.
type registration struct {
	info  *PathInfo
	build *BuildRecord
	done  bool
	err   error
}

// registerDurably registers info once its content, the rename that put it
// in place and its record (info/<hash>.json) are durable: the record is
// written, the store's file system synced, and only then is the
// registering transaction committed. After a power loss at any moment a
// registered path is complete, and a record never describes content that
// is not (RebuildDB checks the content against it). Installs that wait at
// the same time share the sync and the transaction.
func (s *Store) registerDurably(ctx context.Context, info *PathInfo, build *BuildRecord) error {
	if err := s.writePathRecord(info); err != nil {
		return err
	}
	r := &registration{info: info, build: build}
	g := &s.registrar
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	g.queue = append(g.queue, r)
	for !r.done {
		if g.running {
			g.cond.Wait()
			continue
		}
		// No group is under way: this caller registers every one
		// waiting, its own among them.
		group := g.queue
		g.queue, g.running = nil, true
		g.mu.Unlock()
		// The group's members are other callers' too: one caller's
		// cancellation does not stop theirs.
		s.registerGroup(context.WithoutCancel(ctx), group)
		g.mu.Lock()
		g.running = false
		for _, m := range group {
			m.done = true
		}
		g.cond.Broadcast()
	}
	return r.err
}

// registerGroup syncs the store's file system and registers the group in
// one transaction, setting each member's error. A member that cannot be
// registered fails alone: the transaction is rolled back and the rest
// registered again without it (failures are rare; savepoints for every
// member would cost every group).
func (s *Store) registerGroup(ctx context.Context, group []*registration) {
	fail := func(err error) {
		for _, m := range group {
			if m.err == nil {
				m.err = fmt.Errorf("registering %s: %w", m.info.Path, err)
			}
		}
	}
	if err := s.sync(); err != nil {
		fail(err)
		return
	}
	for {
		retry, err := s.registerTx(ctx, group)
		if err != nil {
			fail(err)
		}
		if !retry {
			return
		}
	}
}

// registerTx registers the members of group that have not failed in one
// transaction. If one fails, it rolls back and says to retry.
func (s *Store) registerTx(ctx context.Context, group []*registration) (retry bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	left := 0
	for _, m := range group {
		if m.err != nil {
			continue
		}
		if m.err = s.register(ctx, tx, m.info, m.build); m.err != nil {
			// Those registered before it are rolled back with it, and
			// registered again.
			return true, nil
		}
		left++
	}
	if left == 0 {
		return false, nil
	}
	return false, tx.Commit()
}

// register records info (whose content is already complete at its
// physical path), its references and the build that made it (if any) in
// tx. References must be valid paths. registerGroup is its only caller.
func (s *Store) register(ctx context.Context, tx *sql.Tx, info *PathInfo, build *BuildRecord) error {
	exec := func(query string, args ...any) (sql.Result, error) {
		q, err := s.stmt(ctx, query)
		if err != nil {
			return nil, err
		}
		return tx.StmtContext(ctx, q).ExecContext(ctx, args...)
	}
	res, err := exec(`INSERT INTO paths(path, content_hash, size, files, deriver, registered, ca) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		info.Path.String(), info.ContentHash.String(), info.Size, info.Files, info.Deriver.String(), info.Registered, info.CA)
	if err != nil {
		return fmt.Errorf("registering %s: %w", info.Path, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("registering %s: %w", info.Path, err)
	}
	for _, r := range info.References {
		if r == info.Path {
			if _, err := exec(`INSERT INTO refs(referrer, reference) VALUES (?, ?)`, id, id); err != nil {
				return fmt.Errorf("registering %s: %w", info.Path, err)
			}
			continue
		}
		res, err := exec(`INSERT INTO refs(referrer, reference) SELECT ?, id FROM paths WHERE path = ?`, id, r.String())
		if err != nil {
			return fmt.Errorf("registering %s: reference %s: %w", info.Path, r, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("registering %s: its reference %s is not a valid path", info.Path, r)
		}
	}
	if build != nil {
		if _, err := exec(`INSERT INTO builds(drv, started, finished, status, log) VALUES (?, ?, ?, 'ok', ?)`,
			build.Drv.String(), build.Started, info.Registered, build.Log); err != nil {
			return fmt.Errorf("registering %s: %w", info.Path, err)
		}
	}
	return nil
}
