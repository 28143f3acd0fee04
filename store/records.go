package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"hephc.dev/hephc/srcpos"
)

// SaveDerivations records the derivations hs of g, and where each was
// written, in one transaction, so that later commands can name them. Each
// is recorded on disk too (drv/<hash>.json), before the transaction; the
// sync before a path built from it is registered makes the record
// durable.
func (s *Store) SaveDerivations(ctx context.Context, g *Graph, hs []DrvHash) (err error) {
	defer s.annotate(&err)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("saving derivations: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO derivations(hash, name, json, attr, pos) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(hash) DO UPDATE SET attr = excluded.attr, pos = excluded.pos`)
	if err != nil {
		return fmt.Errorf("saving derivations: %w", err)
	}
	defer stmt.Close()
	for _, h := range hs {
		d := g.Derivations[h]
		b, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("saving derivation %s: %w", d.Name, err)
		}
		o := g.Origins[h]
		if err := s.writeDerivationRecord(h, b, o.Attr, o.Pos.String()); err != nil {
			return err
		}
		if _, err := stmt.ExecContext(ctx, h.String(), d.Name, b, o.Attr, o.Pos.String()); err != nil {
			return fmt.Errorf("saving derivation %s: %w", d.Name, err)
		}
	}
	return tx.Commit()
}

// SavedDerivation is a derivation as the store recorded it.
type SavedDerivation struct {
	Hash       DrvHash
	Derivation *Derivation
	Attr       string
	Pos        srcpos.Pos
}

// LoadDerivation returns the derivation h as recorded by SaveDerivations.
func (s *Store) LoadDerivation(ctx context.Context, h DrvHash) (_ *SavedDerivation, _ bool, err error) {
	defer s.annotate(&err)
	var (
		b         []byte
		attr, pos string
	)
	err = s.db.QueryRowContext(ctx, `SELECT json, attr, pos FROM derivations WHERE hash = ?`, h.String()).Scan(&b, &attr, &pos)
	if err == sql.ErrNoRows {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("loading derivation %s: %w", h, err)
	}
	d, err := ParseDerivation(b)
	if err != nil {
		return nil, false, fmt.Errorf("loading derivation %s: %w", h, err)
	}
	at, err := srcpos.Parse(pos)
	if err != nil {
		return nil, false, fmt.Errorf("loading derivation %s: %w", h, err)
	}
	return &SavedDerivation{Hash: h, Derivation: d, Attr: attr, Pos: at}, true, nil
}

// BuildRecord is a build that ended, for the builds table.
type BuildRecord struct {
	Drv     DrvHash
	Started int64 // Unix seconds
	Log     string
}

// RecordBuild records a build that ended without registering anything:
// status says how ("failed", or "rebuilt" for a repair's rebuild). It is
// recorded even when ctx was canceled: the build did end.
func (s *Store) RecordBuild(ctx context.Context, b BuildRecord, status string) {
	s.db.ExecContext(context.WithoutCancel(ctx), `INSERT INTO builds(drv, started, finished, status, log) VALUES (?, ?, ?, ?, ?)`,
		b.Drv.String(), b.Started, s.Now().Unix(), status, b.Log)
}

// LoadGraph returns, from the derivations the store recorded, the graph
// of roots and of every derivation they depend on, with where each was
// last written. A dependency with no record that the store holds as a
// valid fixed-output path (added, not built) gets the derivation its name
// and pin make, which has its hash. A derivation neither recorded nor so
// held is an *UnrecordedError.
func (s *Store) LoadGraph(ctx context.Context, roots ...DrvHash) (*Graph, error) {
	g := &Graph{Derivations: map[DrvHash]*Derivation{}, Origins: map[DrvHash]Origin{}}
	stack := slices.Clone(roots)
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := g.Derivations[h]; ok {
			continue
		}
		sd, ok, err := s.LoadDerivation(ctx, h)
		if err != nil {
			return nil, err
		}
		if !ok {
			d, err := s.pinnedDerivation(ctx, h)
			if err != nil {
				return nil, err
			}
			g.Derivations[h] = d
			continue
		}
		if got, err := sd.Derivation.Hash(); err != nil || got != h {
			return nil, fmt.Errorf("the recorded derivation %s does not hash to its name (%v)", h, err)
		}
		g.Derivations[h] = sd.Derivation
		g.Origins[h] = Origin{Attr: sd.Attr, Pos: sd.Pos}
		for _, in := range sd.Derivation.Inputs {
			stack = append(stack, in)
		}
	}
	return g, nil
}

// pinnedDerivation returns the fixed-output derivation of the valid path
// whose hash is h, made from its name and pin.
func (s *Store) pinnedDerivation(ctx context.Context, h DrvHash) (*Derivation, error) {
	var path, ca string
	err := s.db.QueryRowContext(ctx, `SELECT path, ca FROM paths WHERE path LIKE ? AND ca != ''`, Dir+"/"+h.String()+"-%").Scan(&path, &ca)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &UnrecordedError{Drv: h}
	}
	if err != nil {
		return nil, fmt.Errorf("loading derivation %s: %w", h, err)
	}
	p, err := ParsePath(path)
	if err != nil {
		return nil, err
	}
	d := &Derivation{Name: p.Name, OutputHash: ca}
	if got, err := d.Hash(); err != nil || got != h {
		return nil, &UnrecordedError{Drv: h}
	}
	return d, nil
}

// UnrecordedError is a derivation the store has no record of.
type UnrecordedError struct{ Drv DrvHash }

func (e *UnrecordedError) Error() string {
	return fmt.Sprintf("the store has no record of derivation %s", e.Drv)
}
