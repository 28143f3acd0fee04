package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// Closure returns ps and every path they refer to, directly or not,
// sorted. Every one must be valid.
func (s *Store) Closure(ctx context.Context, ps ...Path) ([]Path, error) {
	infos, err := s.closureInfos(ctx, ps)
	if err != nil {
		return nil, err
	}
	out := make([]Path, len(infos))
	for i, info := range infos {
		out[i] = info.Path
	}
	return out, nil
}

// ClosureSize returns the size of the closure of ps: the sum of the sizes
// of its paths, each counted once.
func (s *Store) ClosureSize(ctx context.Context, ps ...Path) (int64, error) {
	infos, err := s.closureInfos(ctx, ps)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, info := range infos {
		total += info.Size
	}
	return total, nil
}

// closureInfos returns the path and size of each path of the closure of
// ps, sorted by path, in one query: a build asks for its inputs'
// closure, and a query per path and another for its references cost
// 3× as much (BenchmarkClosure, 200 paths: 4.1–11.9 ms to 1.3–2.1 ms at
// load 25).
func (s *Store) closureInfos(ctx context.Context, ps []Path) (_ []*PathInfo, err error) {
	defer s.annotate(&err)
	if len(ps) == 0 {
		return nil, nil
	}
	list := make([]string, len(ps))
	for i, p := range ps {
		list[i] = p.String()
	}
	arg, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	q, err := s.stmt(ctx, `WITH RECURSIVE c(id) AS (
			SELECT id FROM paths WHERE path IN (SELECT value FROM json_each(?1))
			UNION SELECT r.reference FROM refs r JOIN c ON r.referrer = c.id)
		SELECT p.path, p.size FROM c JOIN paths p ON p.id = c.id ORDER BY p.path`)
	if err != nil {
		return nil, fmt.Errorf("closure of %s: %w", ps, err)
	}
	rows, err := q.QueryContext(ctx, string(arg))
	if err != nil {
		return nil, fmt.Errorf("closure of %s: %w", ps, err)
	}
	defer rows.Close()
	var out []*PathInfo
	found := make(map[Path]bool, len(ps))
	for rows.Next() {
		var (
			str  string
			size int64
		)
		if err := rows.Scan(&str, &size); err != nil {
			return nil, fmt.Errorf("closure of %s: %w", ps, err)
		}
		p, err := ParsePath(str)
		if err != nil {
			return nil, fmt.Errorf("closure of %s: %w", ps, err)
		}
		found[p] = true
		out = append(out, &PathInfo{Path: p, Size: size})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("closure of %s: %w", ps, err)
	}
	for _, p := range ps {
		if !found[p] {
			return nil, fmt.Errorf("closure of %s: %s is not valid", ps, p)
		}
	}
	// SQLite orders by its collation, BINARY: byte order, as sortPaths.
	return out, nil
}
