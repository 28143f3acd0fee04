package store

import (
	"context"
	"database/sql"
	"fmt"
)

// GenerationRecord is a row of the generations table: one generation of a
// profile (package profile gives them meaning). Every generation's
// toplevel is a GC root.
type GenerationRecord struct {
	GenerationID
	Toplevel Path
	Created  int64 // Unix seconds
	// ConfigHash is the blake3 of the configuration's files; Config the
	// files, for people.
	ConfigHash, Config string
	ClosureSize        int64
	Current            bool // the profile's current generation
}

// AddGeneration records rec as the next generation of rec.Profile (one
// past its last, whatever rec.Number says) and makes it current, in one
// transaction, and returns its number. It is recorded on disk too
// (generations/<profile>/<n>.json before the transaction commits,
// generations/<profile>/current after), and both are durable when it
// returns. The caller holds the GC
// lock shared from before it made the toplevel valid: the toplevel has no
// root until its row exists.
func (s *Store) AddGeneration(ctx context.Context, rec GenerationRecord) (_ int, err error) {
	defer s.annotate(&err)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("recording a generation of %s: %w", rec.Profile, err)
	}
	defer tx.Rollback()
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(number) FROM generations WHERE profile = ?`, rec.Profile).Scan(&last); err != nil {
		return 0, fmt.Errorf("recording a generation of %s: %w", rec.Profile, err)
	}
	n := int(last.Int64) + 1
	if _, err := tx.ExecContext(ctx, `INSERT INTO generations(profile, number, toplevel, created, config_hash, config, closure_size) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		rec.Profile, n, rec.Toplevel.String(), rec.Created, rec.ConfigHash, rec.Config, rec.ClosureSize); err != nil {
		return 0, fmt.Errorf("recording a generation of %s: %w", rec.Profile, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO profiles(name, current) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET current = excluded.current`, rec.Profile, n); err != nil {
		return 0, fmt.Errorf("recording a generation of %s: %w", rec.Profile, err)
	}
	rec.Number = n
	if err := s.writeGenerationRecord(rec); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		s.removeGenerationRecord(rec.GenerationID)
		return 0, fmt.Errorf("recording a generation of %s: %w", rec.Profile, err)
	}
	if err := s.writeCurrentRecord(rec.Profile, n); err != nil {
		return 0, err
	}
	if err := s.sync(); err != nil {
		return 0, fmt.Errorf("recording a generation of %s: %w", rec.Profile, err)
	}
	return n, nil
}

// GenerationRecords returns profile's generations, oldest first, or every
// profile's (by profile) when profile is "".
func (s *Store) GenerationRecords(ctx context.Context, profile string) (_ []GenerationRecord, err error) {
	defer s.annotate(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT g.profile, g.number, g.toplevel, g.created, g.config_hash, g.config, g.closure_size, g.number = COALESCE(p.current, -1)
		FROM generations g LEFT JOIN profiles p ON p.name = g.profile
		WHERE ? = '' OR g.profile = ? ORDER BY g.profile, g.number`, profile, profile)
	if err != nil {
		return nil, fmt.Errorf("listing generations: %w", err)
	}
	defer rows.Close()
	var recs []GenerationRecord
	for rows.Next() {
		var (
			r   GenerationRecord
			top string
		)
		if err := rows.Scan(&r.Profile, &r.Number, &top, &r.Created, &r.ConfigHash, &r.Config, &r.ClosureSize, &r.Current); err != nil {
			return nil, fmt.Errorf("listing generations: %w", err)
		}
		if r.Toplevel, err = ParsePath(top); err != nil {
			return nil, fmt.Errorf("listing generations: %w", err)
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// SetCurrentGeneration makes generation n of profile, which exists, the
// current one, on disk and in the database, durably.
func (s *Store) SetCurrentGeneration(ctx context.Context, profile string, n int) (err error) {
	defer s.annotate(&err)
	if err := s.writeCurrentRecord(profile, n); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE profiles SET current = ? WHERE name = ?`, n, profile); err != nil {
		return fmt.Errorf("setting the current generation of %s: %w", profile, err)
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("setting the current generation of %s: %w", profile, err)
	}
	return nil
}
