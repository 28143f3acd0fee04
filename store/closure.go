package store

import (
	"context"
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

// closureInfos returns what the store knows of each path of the closure
// of ps, sorted by path.
func (s *Store) closureInfos(ctx context.Context, ps []Path) ([]*PathInfo, error) {
	seen := make(map[Path]*PathInfo)
	stack := append([]Path(nil), ps...)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[p]; ok {
			continue
		}
		info, ok, err := s.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("closure of %s: %s is not valid", ps, p)
		}
		seen[p] = info
		stack = append(stack, info.References...)
	}
	paths := make([]Path, 0, len(seen))
	for p := range seen {
		paths = append(paths, p)
	}
	sortPaths(paths)
	out := make([]*PathInfo, len(paths))
	for i, p := range paths {
		out[i] = seen[p]
	}
	return out, nil
}
