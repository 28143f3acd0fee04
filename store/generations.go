package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Generation is one realization recorded in a profile: which roots it
// built (by CUE path), the generation object that holds them (a store
// path whose references are the roots, so the garbage collector keeps
// their closures), and what it was built from.
type Generation struct {
	Profile string
	Number  int
	// Toplevel is the generation object: a store path whose roots.json
	// lists the roots and which refers to each of them.
	Toplevel Path
	Roots    map[string]Path
	Created  int64 // Unix seconds
	// ConfigHash is the blake3 of the configuration's files.
	ConfigHash  string
	Config      string // the configuration's files, for people
	ClosureSize int64
	Current     bool
}

// generationObject is roots.json in a generation object.
type generationObject struct {
	Profile string            `json:"profile"`
	Roots   map[string]string `json:"roots"`
}

// RecordGeneration records a new generation of profile holding roots
// (which must be valid) and makes it current, unless the current one
// holds the same roots. The generation object is
// content-addressed: the same roots give the same object.
// recorded is false when it did not.
func (s *Store) RecordGeneration(ctx context.Context, profile string, roots map[string]Path, configHash, config string) (gen *Generation, recorded bool, err error) {
	if err := CheckName(profile); err != nil {
		return nil, false, fmt.Errorf("profile: %w", err)
	}
	// The generation object is unrooted until its row exists.
	gcLock, err := s.LockGC(ctx, false)
	if err != nil {
		return nil, false, err
	}
	defer gcLock.Unlock()
	obj := generationObject{Profile: profile, Roots: map[string]string{}}
	var rootPaths []Path
	for attr, p := range roots {
		obj.Roots[attr] = p.String()
		rootPaths = append(rootPaths, p)
	}
	sortPaths(rootPaths)
	b, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.Dir, "tmp"), "generation-")
	if err != nil {
		return nil, false, err
	}
	defer RemoveTree(tmp)
	dir := filepath.Join(tmp, "generation")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(filepath.Join(dir, "roots.json"), append(b, '\n'), 0o644); err != nil {
		return nil, false, err
	}
	top, err := s.add(ctx, dir, profile+"-generation", rootPaths)
	if err != nil {
		return nil, false, fmt.Errorf("recording a generation of %s: %w", profile, err)
	}
	closure, err := s.Closure(ctx, top)
	if err != nil {
		return nil, false, err
	}
	var size int64
	for _, p := range closure {
		info, _, err := s.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, false, err
		}
		size += info.Size
	}

	// Realizing what the current generation already is records nothing.
	if cur, err := s.Generation(ctx, profile, 0); err == nil && cur.Toplevel == top {
		cur.Roots = roots
		return cur, false, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback()
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(number) FROM generations WHERE profile = ?`, profile).Scan(&last); err != nil {
		return nil, false, err
	}
	g := &Generation{Profile: profile, Number: int(last.Int64) + 1, Toplevel: top, Roots: roots, Created: s.Now().Unix(), ConfigHash: configHash, Config: config, ClosureSize: size, Current: true}
	if _, err := tx.ExecContext(ctx, `INSERT INTO generations(profile, number, toplevel, created, config_hash, config, closure_size) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		profile, g.Number, top.String(), g.Created, configHash, config, size); err != nil {
		return nil, false, fmt.Errorf("recording a generation of %s: %w", profile, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO profiles(name, current) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET current = excluded.current`, profile, g.Number); err != nil {
		return nil, false, err
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err
	}
	return g, true, s.linkProfile(profile, top)
}

// linkProfile points Dir/profiles/NAME at the current generation object.
func (s *Store) linkProfile(profile string, top Path) error {
	dir := filepath.Join(s.Dir, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	link := filepath.Join(dir, profile)
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(s.Physical(top), tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}

// Generations returns profile's generations, oldest first.
func (s *Store) Generations(ctx context.Context, profile string) ([]*Generation, error) {
	var current sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT current FROM profiles WHERE name = ?`, profile).Scan(&current); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT number, toplevel, created, config_hash, config, closure_size FROM generations WHERE profile = ? ORDER BY number`, profile)
	if err != nil {
		return nil, fmt.Errorf("listing generations of %s: %w", profile, err)
	}
	defer rows.Close()
	var gens []*Generation
	for rows.Next() {
		g := &Generation{Profile: profile}
		var top string
		if err := rows.Scan(&g.Number, &top, &g.Created, &g.ConfigHash, &g.Config, &g.ClosureSize); err != nil {
			return nil, err
		}
		if g.Toplevel, err = ParsePath(top); err != nil {
			return nil, err
		}
		g.Current = current.Valid && int64(g.Number) == current.Int64
		gens = append(gens, g)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, g := range gens {
		if err := s.loadRoots(g); err != nil {
			return nil, err
		}
	}
	return gens, nil
}

// loadRoots reads a generation object's roots.json.
func (s *Store) loadRoots(g *Generation) error {
	b, err := os.ReadFile(filepath.Join(s.Physical(g.Toplevel), "roots.json"))
	if err != nil {
		return fmt.Errorf("generation %d of %s: %w", g.Number, g.Profile, err)
	}
	var obj generationObject
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("generation %d of %s: %w", g.Number, g.Profile, err)
	}
	g.Roots = make(map[string]Path, len(obj.Roots))
	for attr, p := range obj.Roots {
		if g.Roots[attr], err = ParsePath(p); err != nil {
			return err
		}
	}
	return nil
}

// Generation returns generation n of profile (n = 0: the current one).
func (s *Store) Generation(ctx context.Context, profile string, n int) (*Generation, error) {
	gens, err := s.Generations(ctx, profile)
	if err != nil {
		return nil, err
	}
	for _, g := range gens {
		if g.Number == n || n == 0 && g.Current {
			return g, nil
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("profile %s has no generations", profile)
	}
	return nil, fmt.Errorf("profile %s has no generation %d (it has %s)", profile, n, generationNumbers(gens))
}

// SetCurrent makes generation n of profile the current one.
func (s *Store) SetCurrent(ctx context.Context, profile string, n int) (*Generation, error) {
	g, err := s.Generation(ctx, profile, n)
	if err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE profiles SET current = ? WHERE name = ?`, n, profile); err != nil {
		return nil, err
	}
	g.Current = true
	return g, s.linkProfile(profile, g.Toplevel)
}

func generationNumbers(gens []*Generation) string {
	if len(gens) == 0 {
		return "none"
	}
	nums := make([]int, len(gens))
	for i, g := range gens {
		nums[i] = g.Number
	}
	sort.Ints(nums)
	return fmt.Sprint(nums)
}
