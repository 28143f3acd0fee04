package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// Store is a hash-keyed store on disk. Its physical directory holds
//
//	store/<hash>-<name>   the outputs, read-only, mapped to /heph/store in builds
//	db.sqlite             the database (see schema)
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

// Open opens the store in dir, creating it if needed.
func Open(dir string) (*Store, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"store", "logs", "tmp", "locks"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("opening store: %w", err)
		}
	}
	db, err := openDB(dir)
	if err != nil {
		return nil, err
	}
	return &Store{Dir: dir, db: db, Now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Physical returns where p's content lives on this machine.
func (s *Store) Physical(p Path) string { return filepath.Join(s.Dir, "store", p.Base()) }

// LogPath returns where the build log of the derivation h is kept.
func (s *Store) LogPath(h DrvHash) string {
	hs := h.String()
	return filepath.Join(s.Dir, "logs", hs[:2], hs+".log")
}

// Lock is a held per-output lock.
type Lock struct{ f *os.File }

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	defer l.f.Close()
	return unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
}

// LockPath takes the exclusive lock of p's output, waiting for another
// process that holds it (it is building or deleting p) or until ctx ends.
// Callers hold the GC lock (LockGC) shared: GC deletes the lock files of
// the paths it deletes.
func (s *Store) LockPath(ctx context.Context, p Path) (*Lock, error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, "locks", p.Hash.String()+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f}, nil
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SaveDerivations records the derivations hs of g, and where each was
// written, in one transaction, so that later commands can name them.
func (s *Store) SaveDerivations(ctx context.Context, g *Graph, hs []DrvHash) error {
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
		if _, err := stmt.ExecContext(ctx, h.String(), d.Name, b, o.Attr, o.Pos); err != nil {
			return fmt.Errorf("saving derivation %s: %w", d.Name, err)
		}
	}
	return tx.Commit()
}

// SavedDerivation is a derivation as the store recorded it.
type SavedDerivation struct {
	Hash       DrvHash
	Derivation *Derivation
	Attr, Pos  string
}

// LoadDerivation returns the derivation h as recorded by SaveDerivations.
func (s *Store) LoadDerivation(ctx context.Context, h DrvHash) (*SavedDerivation, bool, error) {
	var (
		b         []byte
		attr, pos string
	)
	err := s.db.QueryRowContext(ctx, `SELECT json, attr, pos FROM derivations WHERE hash = ?`, h.String()).Scan(&b, &attr, &pos)
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
	return &SavedDerivation{Hash: h, Derivation: d, Attr: attr, Pos: pos}, true, nil
}

func sortPaths(ps []Path) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
}
