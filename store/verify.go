package store

import (
	"context"
	"fmt"
)

// VerifyPath re-hashes p's content and compares it with what the database
// recorded when p was registered.
func (s *Store) VerifyPath(ctx context.Context, p Path) error {
	info, ok, err := s.QueryPathInfo(ctx, p)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is not valid", p)
	}
	tree, err := HashTree(s.Physical(p), HashOptions{})
	if err != nil {
		return fmt.Errorf("verifying %s: %w", p, err)
	}
	if tree.Hash != info.ContentHash {
		return fmt.Errorf("verifying %s: content hashes to %s, the database recorded %s", p, tree.Hash, info.ContentHash)
	}
	return nil
}

// ValidPathList returns every valid path, sorted.
func (s *Store) ValidPathList(ctx context.Context) ([]Path, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT path FROM paths ORDER BY path`)
	if err != nil {
		return nil, fmt.Errorf("listing valid paths: %w", err)
	}
	defer rows.Close()
	var ps []Path
	for rows.Next() {
		var str string
		if err := rows.Scan(&str); err != nil {
			return nil, err
		}
		p, err := ParsePath(str)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, rows.Err()
}

// BuildCount returns how many times h was built to the end (status ok).
func (s *Store) BuildCount(ctx context.Context, h DrvHash) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM builds WHERE drv = ? AND status = 'ok'`, h.String()).Scan(&n)
	return n, err
}
