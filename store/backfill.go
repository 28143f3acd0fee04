package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
)

// adoptRecords makes sure the records on disk hold what the database
// knows. A database made by this hephc says so (recordsKey) from the
// start. An older one that holds paths has them written now, once (under
// the GC lock, so nothing is deleted meanwhile). One that holds no paths
// is new, unless the store holds paths: then it is an empty database
// beside a full store, which GC would empty too (a *DatabaseError).
func (s *Store) adoptRecords() error {
	ctx := context.Background()
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, recordsKey).Scan(&v)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("reading store database: %w", err)
	}
	var one int
	err = s.db.QueryRowContext(ctx, `SELECT 1 FROM paths LIMIT 1`).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if s.holdsPaths() {
			return &DatabaseError{DB: s.dbPath(), Problem: "is empty (it holds no paths, the store does)"}
		}
	case err != nil:
		return fmt.Errorf("reading store database: %w", err)
	default:
		lock, err := s.LockGC(ctx, false)
		if err != nil {
			return err
		}
		defer lock.Unlock()
		if err := s.writeAllRecords(ctx); err != nil {
			return fmt.Errorf("writing the records of the store %s: %w", s.Dir, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO meta(key, value) VALUES (?, '1')`, recordsKey); err != nil {
		return fmt.Errorf("initializing store database: %w", err)
	}
	return nil
}

func (s *Store) dbPath() string { return filepath.Join(s.Dir, DBFile) }

// writeAllRecords writes the record of everything the database knows
// (valid paths, derivations, roots, generations) and syncs them.
func (s *Store) writeAllRecords(ctx context.Context) error {
	infos, err := s.allPathInfos(ctx)
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := s.writePathRecord(info); err != nil {
			return err
		}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT hash, json, attr, pos FROM derivations`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			hs, attr, pos string
			b             []byte
		)
		if err := rows.Scan(&hs, &b, &attr, &pos); err != nil {
			return err
		}
		h, err := ParseDrvHash(hs)
		if err != nil {
			return err
		}
		if err := s.writeDerivationRecord(h, b, attr, pos); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	links, err := indirectRoots(ctx, s.db)
	if err != nil {
		return err
	}
	for _, l := range links {
		if err := s.writeRootRecord(l); err != nil {
			return err
		}
	}
	gens, err := s.GenerationRecords(ctx, "")
	if err != nil {
		return err
	}
	for _, g := range gens {
		if err := s.writeGenerationRecord(g); err != nil {
			return err
		}
		if g.Current {
			if err := s.writeCurrentRecord(g.Profile, g.Number); err != nil {
				return err
			}
		}
	}
	return s.sync()
}

// allPathInfos returns what the database knows of every valid path, in
// two queries.
func (s *Store) allPathInfos(ctx context.Context) ([]*PathInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, path, content_hash, size, files, deriver, registered, ca FROM paths ORDER BY path`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var infos []*PathInfo
	byID := map[int64]*PathInfo{}
	for rows.Next() {
		var (
			id                 int64
			path, content, drv string
			info               PathInfo
		)
		if err := rows.Scan(&id, &path, &content, &info.Size, &info.Files, &drv, &info.Registered, &info.CA); err != nil {
			return nil, err
		}
		if info.Path, err = ParsePath(path); err != nil {
			return nil, err
		}
		if info.ContentHash, err = ParseOutputHash(content); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if info.Deriver, err = ParseDrvHash(drv); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		infos = append(infos, &info)
		byID[id] = &info
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	refs, err := s.db.QueryContext(ctx, `SELECT referrer, reference FROM refs`)
	if err != nil {
		return nil, err
	}
	defer refs.Close()
	for refs.Next() {
		var a, b int64
		if err := refs.Scan(&a, &b); err != nil {
			return nil, err
		}
		if byID[a] == nil || byID[b] == nil {
			return nil, fmt.Errorf("a reference from %d to %d, not both valid paths", a, b)
		}
		byID[a].References = append(byID[a].References, byID[b].Path)
	}
	if err := refs.Err(); err != nil {
		return nil, err
	}
	for _, info := range infos {
		sortPaths(info.References)
	}
	return infos, nil
}
