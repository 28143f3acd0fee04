package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// VerifyProblem is a valid path whose content does not match what the
// database recorded when it was registered.
type VerifyProblem struct {
	Path Path
	// Want is the recorded content hash; Got what the content hashes to
	// now, when Err is nil.
	Want, Got OutputHash
	// Err says why the content could not be hashed: it is missing
	// (fs.ErrNotExist) or cannot be read.
	Err error
}

// Missing reports whether p's content is gone altogether.
func (p *VerifyProblem) Missing() bool { return errors.Is(p.Err, fs.ErrNotExist) }

func (p *VerifyProblem) Error() string {
	switch {
	case p.Missing():
		return fmt.Sprintf("%s is missing: the database lists it, the store holds nothing under its name", p.Path)
	case p.Err != nil:
		return fmt.Sprintf("verifying %s: %v", p.Path, p.Err)
	}
	return fmt.Sprintf("%s was modified: its content hashes to %s, the database recorded %s", p.Path, p.Got, p.Want)
}

func (p *VerifyProblem) Unwrap() error { return p.Err }

// VerifyPath re-hashes p's content and compares it with what the database
// recorded when p was registered; a mismatch is a *VerifyProblem.
func (s *Store) VerifyPath(ctx context.Context, p Path) error {
	info, ok, err := s.QueryPathInfo(ctx, p)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is not valid", p)
	}
	if prob := s.verifyOne(p, info.ContentHash); prob != nil {
		return prob
	}
	return nil
}

// verifyOne hashes p's content and compares it with want.
func (s *Store) verifyOne(p Path, want OutputHash) *VerifyProblem {
	phys := s.Physical(p)
	if _, err := os.Lstat(phys); err != nil {
		return &VerifyProblem{Path: p, Want: want, Err: err}
	}
	tree, err := HashTree(phys, HashOptions{})
	if err != nil {
		return &VerifyProblem{Path: p, Want: want, Err: err}
	}
	if tree.Hash != want {
		return &VerifyProblem{Path: p, Want: want, Got: tree.Hash}
	}
	return nil
}

// VerifyOptions control Verify.
type VerifyOptions struct {
	// Jobs is how many paths are hashed at once; 0 means the number of
	// cores.
	Jobs int
	// Checked, if not nil, is called after each path is hashed, with its
	// problem or nil, one call at a time.
	Checked func(p Path, problem *VerifyProblem)
}

// Verify re-hashes the content of ps (every valid path if ps is empty),
// Jobs paths at a time, and returns the paths whose content does not
// match the database, sorted, and how many paths it checked. A path of ps
// that is not valid is an error. Verify holds the GC lock shared: no
// path disappears under it.
func (s *Store) Verify(ctx context.Context, ps []Path, opts VerifyOptions) ([]*VerifyProblem, int, error) {
	lock, err := s.LockGC(ctx, false)
	if err != nil {
		return nil, 0, err
	}
	defer lock.Unlock()
	want, err := s.contentHashes(ctx)
	if err != nil {
		return nil, 0, err
	}
	if len(ps) == 0 {
		for p := range want {
			ps = append(ps, p)
		}
	}
	ps = append([]Path(nil), ps...)
	sortPaths(ps)
	for _, p := range ps {
		if _, ok := want[p]; !ok {
			return nil, 0, fmt.Errorf("%s is not valid in the store %s", p, s.Dir)
		}
	}

	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	var (
		mu       sync.Mutex
		problems []*VerifyProblem
		next     = make(chan Path)
		wg       sync.WaitGroup
	)
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				prob := s.verifyOne(p, want[p])
				mu.Lock()
				if prob != nil {
					problems = append(problems, prob)
				}
				if opts.Checked != nil {
					opts.Checked(p, prob)
				}
				mu.Unlock()
			}
		}()
	}
	checked := 0
feed:
	for _, p := range ps {
		select {
		case next <- p:
			checked++
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, checked, err
	}
	sortProblems(problems)
	return problems, checked, nil
}

func sortProblems(ps []*VerifyProblem) {
	slices.SortFunc(ps, func(a, b *VerifyProblem) int { return strings.Compare(a.Path.String(), b.Path.String()) })
}

// contentHashes returns every valid path's recorded content hash.
func (s *Store) contentHashes(ctx context.Context) (map[Path]OutputHash, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT path, content_hash FROM paths`)
	if err != nil {
		return nil, fmt.Errorf("listing valid paths: %w", err)
	}
	defer rows.Close()
	m := make(map[Path]OutputHash)
	for rows.Next() {
		var ps, hs string
		if err := rows.Scan(&ps, &hs); err != nil {
			return nil, err
		}
		p, err := ParsePath(ps)
		if err != nil {
			return nil, err
		}
		if m[p], err = ParseOutputHash(hs); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return m, rows.Err()
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

// NotRepairableError is a path Repair cannot rebuild.
type NotRepairableError struct {
	Path   Path
	Reason string
}

func (e *NotRepairableError) Error() string {
	return fmt.Sprintf("cannot repair %s: %s", e.Path, e.Reason)
}

// NotReproducibleError is a rebuild whose content differs from what was
// registered: the path is left as it is.
type NotReproducibleError struct {
	Path      Path
	Want, Got OutputHash
}

func (e *NotReproducibleError) Error() string {
	return fmt.Sprintf("cannot repair %s: the rebuilt content hashes to %s, the database recorded %s (the build is not reproducible); the path is left as it is", e.Path, e.Got, e.Want)
}

// RepairResult is what Repair did with one path: Err is nil if it was
// repaired.
type RepairResult struct {
	Path Path
	Err  error
}

// Repair repairs each of ps with RepairPath, every path after the paths
// it refers to (the order they were registered in), and returns what
// became of each, in that order. opts are as for Realize, for the inputs
// a rebuild needs that are not valid any more.
func (s *Store) Repair(ctx context.Context, ps []Path, opts RealizeOptions) ([]RepairResult, error) {
	ordered, err := s.registrationOrder(ctx, ps)
	if err != nil {
		return nil, err
	}
	res := make([]RepairResult, len(ordered))
	for i, p := range ordered {
		res[i] = RepairResult{Path: p, Err: s.RepairPath(ctx, p, opts)}
		if err := ctx.Err(); err != nil {
			return res[:i+1], err
		}
	}
	return res, nil
}

// registrationOrder returns the valid paths of ps in the order of their
// rows, references before referrers; the others, sorted, at the end.
func (s *Store) registrationOrder(ctx context.Context, ps []Path) ([]Path, error) {
	ids := make(map[Path]int64, len(ps))
	for _, p := range ps {
		var id int64
		err := s.db.QueryRowContext(ctx, `SELECT id FROM paths WHERE path = ?`, p.String()).Scan(&id)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("querying %s: %w", p, err)
		}
		if err != nil {
			id = 1 << 62
		}
		ids[p] = id
	}
	out := append([]Path(nil), ps...)
	slices.SortFunc(out, func(a, b Path) int {
		return cmp.Or(cmp.Compare(ids[a], ids[b]), strings.Compare(a.String(), b.String()))
	})
	return out, nil
}

// RepairPath rebuilds p (or refetches it: a fixed-output derivation's
// rebuild is a fetch) from the derivation that built it, as recorded in
// the store, into a scratch directory; if the result hashes to the
// content hash the database recorded, it takes the place of p's content
// in one atomic exchange, and the old content is deleted. p's row and
// every reference to or from it stay as they are. Inputs of the
// derivation that are no longer valid are realized first.
//
// A path added (with Add, or a generation object) has no derivation and
// cannot be repaired (*NotRepairableError); a rebuild that differs is a
// *NotReproducibleError and changes nothing.
func (s *Store) RepairPath(ctx context.Context, p Path, opts RealizeOptions) error {
	gcLock, err := s.LockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gcLock.Unlock()
	info, ok, err := s.QueryPathInfo(ctx, p)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is not valid in the store %s", p, s.Dir)
	}
	g, err := s.savedGraph(ctx, p)
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
		inputs := make([]DrvHash, 0, len(d.Inputs))
		for _, name := range d.InputNames() {
			inputs = append(inputs, d.Inputs[name])
		}
		if _, err := s.Realize(ctx, g, inputs, opts); err != nil {
			return fmt.Errorf("repairing %s: realizing its inputs: %w", p, err)
		}
	}

	lock, err := s.LockPath(ctx, p)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	tmp, err := os.MkdirTemp(filepath.Join(s.Dir, "tmp"), "repair-")
	if err != nil {
		return fmt.Errorf("repairing %s: %w", p, err)
	}
	defer RemoveTree(tmp)
	scratch := filepath.Join(tmp, p.Base())
	rebuilt, err := s.buildTo(ctx, g, h, opts, scratch)
	if err != nil {
		return err
	}
	if rebuilt.ContentHash != info.ContentHash {
		return &NotReproducibleError{Path: p, Want: info.ContentHash, Got: rebuilt.ContentHash}
	}
	if err := exchange(scratch, s.Physical(p)); err != nil {
		return fmt.Errorf("repairing %s: %w", p, err)
	}
	return nil
}

// savedGraph rebuilds, from the derivations table, the graph of the
// derivation that made p.
func (s *Store) savedGraph(ctx context.Context, p Path) (*Graph, error) {
	g := &Graph{Derivations: map[DrvHash]*Derivation{}, Origins: map[DrvHash]Origin{}}
	stack := []DrvHash{p.Hash}
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
		if !ok && h != p.Hash {
			// A valid input added rather than built (Add) has no
			// derivation, but its pin makes one of the same hash.
			if d, ok := s.pinnedDerivation(ctx, h); ok {
				g.Derivations[h] = d
				continue
			}
		}
		if !ok {
			if h == p.Hash {
				return nil, &NotRepairableError{Path: p, Reason: "the store recorded no derivation for it: it was added (as a file or a generation object), not built; add it again"}
			}
			return nil, &NotRepairableError{Path: p, Reason: fmt.Sprintf("the store recorded no derivation for its dependency %s", h)}
		}
		if got, err := sd.Derivation.Hash(); err != nil || got != h {
			return nil, &NotRepairableError{Path: p, Reason: fmt.Sprintf("the recorded derivation %s does not hash to its name (%v)", h, err)}
		}
		g.Derivations[h] = sd.Derivation
		g.Origins[h] = Origin{Attr: sd.Attr, Pos: sd.Pos}
		for _, in := range sd.Derivation.Inputs {
			stack = append(stack, in)
		}
	}
	if g.PathOf(p.Hash) != p {
		return nil, &NotRepairableError{Path: p, Reason: fmt.Sprintf("the recorded derivation %s names %s", p.Hash, g.PathOf(p.Hash))}
	}
	return g, nil
}

// pinnedDerivation returns the fixed-output derivation of the valid path
// whose hash is h, made from its name and pin.
func (s *Store) pinnedDerivation(ctx context.Context, h DrvHash) (*Derivation, bool) {
	var path, ca string
	if err := s.db.QueryRowContext(ctx, `SELECT path, ca FROM paths WHERE path LIKE ? AND ca != ''`, Dir+"/"+h.String()+"-%").Scan(&path, &ca); err != nil {
		return nil, false
	}
	p, err := ParsePath(path)
	if err != nil {
		return nil, false
	}
	d := &Derivation{Name: p.Name, OutputHash: ca}
	if got, err := d.Hash(); err != nil || got != h {
		return nil, false
	}
	return d, true
}

// originDir is the directory of the file an origin's position names, if
// it is absolute: where a fetch-file derivation's file is relative to.
func originDir(o Origin) string {
	file, _, _ := strings.Cut(o.Pos, ":")
	if !filepath.IsAbs(file) {
		return ""
	}
	return filepath.Dir(file)
}

// exchange puts the tree at scratch in place of the one at phys (or where
// phys would be) in one step, leaves the old one at scratch, and makes the
// new one canonical again. An ordinary user can move a directory to
// another parent only if it is writable (its .. changes), so both roots
// are made writable first; the content stays the same meanwhile.
func exchange(scratch, phys string) error {
	makeMovable(scratch)
	if _, err := os.Lstat(phys); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(scratch, phys); err != nil {
			return err
		}
		return Canonicalize(phys)
	}
	makeMovable(phys)
	err := unix.Renameat2(unix.AT_FDCWD, scratch, unix.AT_FDCWD, phys, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_EXCHANGE: two renames, with a
		// moment in between when phys is missing.
		aside := scratch + ".old"
		if err := os.Rename(phys, aside); err != nil {
			return err
		}
		if err = os.Rename(scratch, phys); err != nil {
			os.Rename(aside, phys)
		} else {
			err = os.Rename(aside, scratch)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "exchange", Old: scratch, New: phys, Err: err}
	}
	return Canonicalize(phys)
}

// makeMovable gives a directory at path u+rwx; anything else is left.
func makeMovable(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		os.Chmod(path, fi.Mode().Perm()|0o700)
	}
}
