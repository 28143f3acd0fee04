package realize

import (
	"context"
	"fmt"
	"strings"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
)

// CheckResult is what rebuilding a valid path found.
type CheckResult struct {
	Path store.Path
	// Fixed says it is a fixed-output path: the rebuild was a refetch.
	Fixed bool
	// Recorded is the content hash the store recorded, Rebuilt the
	// rebuild's.
	Recorded, Rebuilt store.OutputHash
	// PinErr is set when a refetch does not hash to its pin.
	PinErr error
	// Kept is the rebuild's tree, kept beside the store's when the two
	// differ (in the store's temporary directory, until the next garbage
	// collection); "" when they are the same.
	Kept string
	// Differences are how the two trees differ, sorted by file.
	Differences []Difference
	// Log is the rebuild's log.
	Log string
}

// Reproduced reports whether the rebuild gave the recorded content.
func (r *CheckResult) Reproduced() bool { return r.Rebuilt == r.Recorded && r.PinErr == nil }

// Check rebuilds each of roots, whose outputs must be valid in st, with
// CheckPath, one after another, and returns what each found, in order. It
// stops at the first error (a failed rebuild: a *BuildError); a rebuild
// that differs is a result, not an error.
func Check(ctx context.Context, st *store.Store, g *store.Graph, roots []store.DrvHash, opts Options) ([]*CheckResult, error) {
	var out []*CheckResult
	for _, h := range roots {
		r, err := CheckPath(ctx, st, g, h, opts)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// CheckPath rebuilds h (refetches it, if it is a fixed-output derivation)
// in a fresh sandbox into the store's temporary directory, and compares
// the result with h's output, which must be valid in st: it never
// replaces it, never registers anything. The inputs the rebuild needs
// that are not valid are realized first (with opts). If the rebuild
// hashes as recorded, it is removed and opts.Attester (if any) attests
// the reproduction; if not, it is kept (CheckResult.Kept) and the
// differences are listed. The rebuild's log is the build log's with
// .check.log for .log.
func CheckPath(ctx context.Context, st *store.Store, g *store.Graph, h store.DrvHash, opts Options) (*CheckResult, error) {
	gcLock, err := st.LockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	d, ok := g.Derivations[h]
	if !ok {
		return nil, fmt.Errorf("checking: derivation %s is not in the graph", h)
	}
	p := g.PathOf(h)
	recorded, ok, err := st.QueryPathInfo(ctx, p)
	if err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("checking %s: it is not valid in the store %s: realize it first", p, st.Dir)
	}
	if len(d.Inputs) > 0 {
		inputs := make([]store.DrvHash, 0, len(d.Inputs))
		for _, name := range d.InputNames() {
			inputs = append(inputs, d.Inputs[name])
		}
		if _, err := Realize(ctx, st, g, inputs, opts); err != nil {
			return nil, fmt.Errorf("checking %s: realizing its inputs: %w", p, err)
		}
	}
	logPath := strings.TrimSuffix(st.LogPath(h), ".log") + ".check.log"
	b, err := runBuilder(ctx, st, g, h, opts, logPath)
	if err != nil {
		return nil, err
	}
	res := &CheckResult{Path: p, Fixed: d.IsFixedOutput(), Recorded: recorded.ContentHash, Log: logPath}
	keep := false
	defer func() {
		if !keep {
			fstree.RemoveTree(b.tmp)
		}
	}()
	// As Install would have it: canonical, then hashed.
	if err := fstree.CanonicalizeAs(b.out, st.Owner()); err != nil {
		return nil, b.fail(err)
	}
	tree, err := fstree.HashTree(b.out, fstree.HashOptions{})
	if err != nil {
		return nil, b.fail(err)
	}
	res.Rebuilt = tree.Hash
	if d.IsFixedOutput() {
		res.PinErr = verifyFixedOutput(d, b.out, tree.Hash)
	}
	st.RecordBuild(ctx, b.rec, "checked")
	if res.Reproduced() {
		if opts.Attester != nil {
			if err := opts.Attester.Reproduced(ctx, recorded); err != nil {
				return res, fmt.Errorf("attesting the reproduction of %s: %w", p, err)
			}
		}
		return res, nil
	}
	keep = true
	res.Kept = b.out
	if res.Rebuilt != res.Recorded {
		if res.Differences, err = DiffTrees(st.Physical(p), b.out); err != nil {
			return res, fmt.Errorf("comparing the rebuild of %s: %w", p, err)
		}
	}
	return res, nil
}
