package realize

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
)

// VerifyProblem is a valid path whose content does not match what the
// database recorded when it was registered, or whose entries are not as
// the store keeps them (modes, owner), or whose record on disk does not
// say what the database says.
type VerifyProblem struct {
	Path store.Path
	// Want is the recorded content hash; Got what the content hashes to
	// now, when Err is nil.
	Want, Got store.OutputHash
	// Err says why the content could not be hashed: it is missing
	// (fs.ErrNotExist) or cannot be read.
	Err error
	// Deviations are the entries whose permissions are not canonical
	// (setuid, setgid, writable…) or that the store's owner does not
	// own.
	Deviations []fstree.Deviation
	// Record says what is wrong with the path's record on disk
	// (store.CheckRecord), which a rebuilt database would be made from.
	Record error
}

// Missing reports whether p's content is gone altogether.
func (p *VerifyProblem) Missing() bool { return errors.Is(p.Err, fs.ErrNotExist) }

// Modified reports whether p's content hashes to something else than the
// database recorded.
func (p *VerifyProblem) Modified() bool { return p.Err == nil && p.Got != p.Want }

// ContentIntact reports whether p's content hashes to what the database
// recorded: only its modes, owners or record need restoring, in place.
func (p *VerifyProblem) ContentIntact() bool { return p.Err == nil && p.Got == p.Want }

// maxDeviations is how many deviations Error names.
const maxDeviations = 5

func (p *VerifyProblem) Error() string {
	switch {
	case p.Missing():
		return fmt.Sprintf("%s is missing: the database lists it, the store holds nothing under its name", p.Path)
	case p.Err != nil:
		return fmt.Sprintf("verifying %s: %v", p.Path, p.Err)
	}
	var parts []string
	if p.Modified() {
		parts = append(parts, fmt.Sprintf("was modified: its content hashes to %s, the database recorded %s", p.Got, p.Want))
	}
	if n := len(p.Deviations); n > 0 {
		var ds []string
		for _, d := range p.Deviations[:min(n, maxDeviations)] {
			ds = append(ds, d.String())
		}
		if n > maxDeviations {
			ds = append(ds, fmt.Sprintf("and %d more", n-maxDeviations))
		}
		parts = append(parts, "has unsafe modes or owners: "+strings.Join(ds, "; "))
	}
	if p.Record != nil {
		parts = append(parts, p.Record.Error())
	}
	return p.Path.String() + " " + strings.Join(parts, "; ")
}

func (p *VerifyProblem) Unwrap() error { return p.Err }

// verifyOne hashes the valid path p's content and compares it with what
// the database recorded, checks its entries' modes and owners and its
// record on disk.
func verifyOne(ctx context.Context, st *store.Store, p store.Path) (*VerifyProblem, error) {
	info, ok, err := st.QueryPathInfo(ctx, p)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s is not valid in the store %s", p, st.Dir)
	}
	want := info.ContentHash
	phys := st.Physical(p)
	if _, err := os.Lstat(phys); err != nil {
		return &VerifyProblem{Path: p, Want: want, Err: err}, nil
	}
	tree, err := fstree.HashTree(phys, fstree.HashOptions{})
	if err != nil {
		return &VerifyProblem{Path: p, Want: want, Err: err}, nil
	}
	prob := &VerifyProblem{Path: p, Want: want, Got: tree.Hash}
	if prob.Deviations, err = fstree.CheckCanonical(phys, st.Owner()); err != nil {
		return &VerifyProblem{Path: p, Want: want, Err: err}, nil
	}
	prob.Record = st.CheckRecord(info)
	if prob.Modified() || len(prob.Deviations) > 0 || prob.Record != nil {
		return prob, nil
	}
	return nil, nil
}

// VerifyOptions control Verify.
type VerifyOptions struct {
	// Jobs is how many paths are hashed at once; 0 means the number of
	// cores.
	Jobs int
	// Checked, if not nil, is called after each path is hashed, with its
	// problem or nil, one call at a time.
	Checked func(p store.Path, problem *VerifyProblem)
}

// Verify re-hashes the content of ps (every valid path if ps is empty),
// Jobs paths at a time, checks their modes, owners and records on disk,
// and returns the paths whose content does not match the database or
// whose metadata or record is not as the store keeps it, sorted, and how
// many paths it checked. A path of ps
// that is not valid is an error. Verify holds the GC lock shared: no
// path disappears under it.
func Verify(ctx context.Context, st *store.Store, ps []store.Path, opts VerifyOptions) ([]*VerifyProblem, int, error) {
	lock, err := st.LockGC(ctx, false)
	if err != nil {
		return nil, 0, err
	}
	defer lock.Unlock()
	if len(ps) == 0 {
		if ps, err = st.ValidPathList(ctx); err != nil {
			return nil, 0, err
		}
	}
	ps = slices.Clone(ps)
	sortPaths(ps)
	valid, err := st.ValidPaths(ctx, ps)
	if err != nil {
		return nil, 0, err
	}
	for _, p := range ps {
		if !valid[p] {
			return nil, 0, fmt.Errorf("%s is not valid in the store %s", p, st.Dir)
		}
	}

	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	var (
		mu       sync.Mutex
		problems []*VerifyProblem
		firstErr error
		next     = make(chan store.Path)
		wg       sync.WaitGroup
	)
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				prob, err := verifyOne(ctx, st, p)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if prob != nil {
					problems = append(problems, prob)
				}
				if opts.Checked != nil && err == nil {
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
	if firstErr != nil {
		return nil, checked, firstErr
	}
	slices.SortFunc(problems, func(a, b *VerifyProblem) int { return strings.Compare(a.Path.String(), b.Path.String()) })
	return problems, checked, nil
}
