package realize

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/store"
)

// NotRepairableError is a path Repair cannot rebuild.
type NotRepairableError struct {
	Path   store.Path
	Reason string
}

func (e *NotRepairableError) Error() string {
	return fmt.Sprintf("cannot repair %s: %s", e.Path, e.Reason)
}

// NotReproducibleError is a rebuild whose content differs from what was
// registered: the path is left as it is.
type NotReproducibleError struct {
	Path      store.Path
	Want, Got store.OutputHash
}

func (e *NotReproducibleError) Error() string {
	return fmt.Sprintf("cannot repair %s: the rebuilt content hashes to %s, the database recorded %s (the build is not reproducible); the path is left as it is", e.Path, e.Got, e.Want)
}

// RepairResult is what Repair did with one path: Err is nil if it was
// repaired.
type RepairResult struct {
	Path store.Path
	Err  error
}

// Repair repairs each of ps with RepairPath, every path after the valid
// paths of ps it refers to (those that are not valid last), and returns
// what became of each, in that order. opts are as for Realize, for the
// inputs a rebuild needs that are not valid any more.
func Repair(ctx context.Context, st *store.Store, ps []store.Path, opts Options) ([]RepairResult, error) {
	ordered, _, err := referencesFirst(ctx, st, ps)
	if err != nil {
		return nil, err
	}
	res := make([]RepairResult, len(ordered))
	for i, p := range ordered {
		res[i] = RepairResult{Path: p, Err: RepairPath(ctx, st, p, opts)}
		if err := ctx.Err(); err != nil {
			return res[:i+1], err
		}
	}
	return res, nil
}

// referencesFirst orders ps so that each path valid in src comes after
// the paths of ps it refers to, directly or not (the references outside
// ps are followed too, for what they reach of ps); ties, and the paths
// that are not valid (at the end), sorted. infos holds what src knows of
// every valid path of ps.
func referencesFirst(ctx context.Context, src Source, ps []store.Path) (order []store.Path, infos map[store.Path]*store.PathInfo, err error) {
	sorted := slices.Compact(slices.SortedFunc(slices.Values(ps), func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) }))
	infos = make(map[store.Path]*store.PathInfo, len(sorted))
	var invalid []store.Path
	for _, p := range sorted {
		info, ok, err := src.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			invalid = append(invalid, p)
			continue
		}
		infos[p] = info
	}
	done := make(map[store.Path]bool)
	var visit func(p store.Path) error
	visit = func(p store.Path) error {
		if done[p] {
			return nil
		}
		done[p] = true
		info, ok := infos[p]
		if !ok {
			var err error
			if info, ok, err = src.QueryPathInfo(ctx, p); err != nil || !ok {
				return err
			}
		}
		for _, r := range info.References {
			if err := visit(r); err != nil {
				return err
			}
		}
		if _, mine := infos[p]; mine {
			order = append(order, p)
		}
		return nil
	}
	for _, p := range sorted {
		if _, ok := infos[p]; ok {
			if err := visit(p); err != nil {
				return nil, nil, err
			}
		}
	}
	return append(order, invalid...), infos, nil
}

// RepairPath repairs p. If its content still hashes to what the database
// recorded, only its modes, owners and record on disk can be wrong: they
// are restored in place (store.RestoreMetadata), with no rebuild.
// Otherwise it rebuilds p (or refetches it: a fixed-output derivation's
// rebuild is a fetch) from the derivation that built it, as recorded in
// the store; if the result hashes to the content hash the database
// recorded, it takes the place of p's content in one atomic exchange
// (store.Install with Repair), and the old content is deleted. p's row
// and every reference to or from it stay as they are. Inputs of the
// derivation that are no longer valid are realized first.
//
// A path added (with Add, or a generation object) has no derivation and
// cannot be rebuilt (*NotRepairableError); a rebuild that differs is a
// *NotReproducibleError and changes nothing.
func RepairPath(ctx context.Context, st *store.Store, p store.Path, opts Options) error {
	gcLock, err := st.LockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gcLock.Unlock()
	// The rebuild's sandbox is torn down, and its slot's init stopped,
	// before the GC lock's release removes the build directories.
	defer sandbox.WaitTeardowns()
	recorded, ok, err := st.QueryPathInfo(ctx, p)
	if err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%s is not valid in the store %s", p, st.Dir)
	}
	if tree, err := fstree.HashTree(st.Physical(p), fstree.HashOptions{}); err == nil && tree.Hash == recorded.ContentHash {
		return st.RestoreMetadata(ctx, p)
	}
	g, err := recordedGraph(ctx, st, p)
	if err != nil {
		return err
	}
	h := p.Hash
	d := g.Derivations[h]
	if opts.SourceDir == "" {
		opts.SourceDir = originDir(g.Origins[h])
	}
	opts.Events, opts.DryRun = nil, false
	if len(d.Inputs) > 0 {
		inputs := make([]store.DrvHash, 0, len(d.Inputs))
		for _, name := range d.InputNames() {
			inputs = append(inputs, d.Inputs[name])
		}
		if _, err := Realize(ctx, st, g, inputs, opts); err != nil {
			return fmt.Errorf("repairing %s: realizing its inputs: %w", p, err)
		}
	}
	lock, err := st.LockPath(ctx, p)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	_, err = build(ctx, st, g, h, opts, lock, recorded, nil)
	return err
}

// recordedGraph is the graph of the derivation that made p, as the store
// recorded it.
func recordedGraph(ctx context.Context, st *store.Store, p store.Path) (*store.Graph, error) {
	if _, ok, err := st.LoadDerivation(ctx, p.Hash); err != nil {
		return nil, err
	} else if !ok {
		return nil, &NotRepairableError{Path: p, Reason: "the store recorded no derivation for it: it was added (as a file or a generation object), not built; add it again"}
	}
	g, err := st.LoadGraph(ctx, p.Hash)
	var missing *store.UnrecordedError
	switch {
	case errors.As(err, &missing):
		return nil, &NotRepairableError{Path: p, Reason: fmt.Sprintf("the store recorded no derivation for its dependency %s", missing.Drv)}
	case err != nil:
		return nil, &NotRepairableError{Path: p, Reason: err.Error()}
	}
	if g.PathOf(p.Hash) != p {
		return nil, &NotRepairableError{Path: p, Reason: fmt.Sprintf("the recorded derivation %s names %s", p.Hash, g.PathOf(p.Hash))}
	}
	return g, nil
}

// originDir is the directory of the file an origin's position names, if
// it is absolute: where a fetch-file derivation's file is relative to.
func originDir(o store.Origin) string {
	file := o.Pos.File
	if !filepath.IsAbs(file) {
		return ""
	}
	return filepath.Dir(file)
}
