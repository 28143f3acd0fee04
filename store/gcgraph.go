package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// refGraph is every valid path and its references, in memory: path i has
// database id ids[i] and refers to out[start[i]:start[i+1]].
type refGraph struct {
	ids   []int64
	paths []string // store paths
	sizes []int64
	index map[string]int32 // store path -> i
	start []int32
	out   []int32
}

// loadRefGraph reads the paths and refs tables, at the same time on two
// connections. (Nothing registers paths while GC holds its lock, so both
// see the same paths; if they did not, an unknown id is an error.)
func (c *collector) loadRefGraph(ctx context.Context) (*refGraph, error) {
	type edges struct {
		from, to []int64
		err      error
	}
	got := make(chan edges, 1)
	go func() {
		var e edges
		defer func() { got <- e }()
		// refs is keyed by (referrer, reference).
		rows, err := c.s.db.QueryContext(ctx, `SELECT referrer, reference FROM refs`)
		if err != nil {
			e.err = err
			return
		}
		defer rows.Close()
		for rows.Next() {
			var a, b int64
			if e.err = rows.Scan(&a, &b); e.err != nil {
				return
			}
			e.from = append(e.from, a)
			e.to = append(e.to, b)
		}
		e.err = rows.Err()
	}()

	g, byID, err := c.loadPaths(ctx)
	e := <-got
	if err != nil {
		return nil, fmt.Errorf("reading valid paths: %w", err)
	}
	if e.err != nil {
		return nil, fmt.Errorf("reading references: %w", e.err)
	}
	// Compressed rows: refs of i are out[start[i]:start[i+1]].
	g.start = make([]int32, len(g.ids)+1)
	from := make([]int32, len(e.from))
	for k := range e.from {
		a, ok1 := byID[e.from[k]]
		b, ok2 := byID[e.to[k]]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("reading references: %d refers to %d, not both valid paths", e.from[k], e.to[k])
		}
		from[k] = a
		e.to[k] = int64(b)
		g.start[a+1]++
	}
	for i := 1; i < len(g.start); i++ {
		g.start[i] += g.start[i-1]
	}
	g.out = make([]int32, len(from))
	fill := slices.Clone(g.start[:len(g.ids)])
	for k, a := range from {
		g.out[fill[a]] = int32(e.to[k])
		fill[a]++
	}
	return g, nil
}

// loadPaths reads the paths table.
func (c *collector) loadPaths(ctx context.Context) (*refGraph, map[int64]int32, error) {
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM paths`).Scan(&n); err != nil {
		return nil, nil, err
	}
	g := &refGraph{
		ids:   make([]int64, 0, n),
		paths: make([]string, 0, n),
		sizes: make([]int64, 0, n),
		index: make(map[string]int32, n),
	}
	byID := make(map[int64]int32, n)
	rows, err := c.db.QueryContext(ctx, `SELECT id, path, size FROM paths`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, size int64
			p        string
		)
		if err := rows.Scan(&id, &p, &size); err != nil {
			return nil, nil, err
		}
		i := int32(len(g.ids))
		g.ids = append(g.ids, id)
		g.paths = append(g.paths, p)
		g.sizes = append(g.sizes, size)
		g.index[p] = i
		byID[id] = i
	}
	return g, byID, rows.Err()
}

func (g *refGraph) refs(i int32) []int32 { return g.out[g.start[i]:g.start[i+1]] }

// mark returns which paths the roots keep alive.
func (g *refGraph) mark(roots []int32) []bool {
	live := make([]bool, len(g.ids))
	g.markFrom(live, roots)
	return live
}

// markFrom marks live the closures of roots.
func (g *refGraph) markFrom(live []bool, roots []int32) {
	stack := append([]int32(nil), roots...)
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if live[i] {
			continue
		}
		live[i] = true
		for _, r := range g.refs(i) {
			if !live[r] {
				stack = append(stack, r)
			}
		}
	}
}

// garbageOrder returns the paths not live, each before every path it
// refers to (Kahn's algorithm on the garbage's references; a live path
// never refers to garbage). Unregistering in this order never leaves a
// registered path referring to an unregistered one.
func (g *refGraph) garbageOrder(live []bool) []int32 {
	indeg := make([]int32, len(g.ids))
	n := 0
	for i := range g.ids {
		if live[i] {
			continue
		}
		n++
		for _, r := range g.refs(int32(i)) {
			if r != int32(i) && !live[r] {
				indeg[r]++
			}
		}
	}
	order := make([]int32, 0, n)
	for i := range g.ids {
		if !live[i] && indeg[i] == 0 {
			order = append(order, int32(i))
		}
	}
	for k := 0; k < len(order); k++ {
		i := order[k]
		for _, r := range g.refs(i) {
			if r == i || live[r] {
				continue
			}
			if indeg[r]--; indeg[r] == 0 {
				order = append(order, r)
			}
		}
	}
	if len(order) < n {
		// A cycle of references, which registration cannot make: leave
		// those paths alone rather than fail.
		for i := range g.ids {
			live[i] = live[i] || indeg[i] > 0
		}
	}
	return order
}

// deleted lists the paths of order, sorted, with their sizes and total.
func (g *refGraph) deleted(order []int32) ([]DeletedPath, int64, error) {
	sorted := slices.Clone(order)
	slices.SortFunc(sorted, func(a, b int32) int { return strings.Compare(g.paths[a], g.paths[b]) })
	out := make([]DeletedPath, len(sorted))
	var total int64
	for k, i := range sorted {
		p, err := ParsePath(g.paths[i])
		if err != nil {
			return nil, 0, err
		}
		out[k] = DeletedPath{p, g.sizes[i]}
		total += g.sizes[i]
	}
	return out, total, nil
}
