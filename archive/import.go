package archive

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// Target is what Import needs of a store: its one way in (Install), a
// place for content on its way there, and which paths it has.
type Target interface {
	LockGC(ctx context.Context, exclusive bool) (*store.Lock, error)
	TempDir(pattern string) (string, error)
	Install(ctx context.Context, req store.InstallRequest) (*store.PathInfo, error)
	ValidPaths(ctx context.Context, ps []store.Path) (map[store.Path]bool, error)
	QueryPathInfo(ctx context.Context, p store.Path) (*store.PathInfo, bool, error)
}

// ImportOptions say what Import admits.
type ImportOptions struct {
	// Policies must each hold for every path imported (the store owner's
	// and any a configuration adds). Import refuses to run without one.
	Policies []*trust.Policy
	// Now is the time keys' expiry is judged at.
	Now time.Time
	// Attestations, when not "", is where the store keeps attestations:
	// the envelopes that counted for a path are kept there.
	Attestations trust.Dir
	// Limits bound each layer; zero fields take DefaultLimits'.
	Limits LayerLimits
}

// DefaultLimits are the layer limits Import uses unless told otherwise.
var DefaultLimits = LayerLimits{MaxBytes: 64 << 30, MaxEntries: 1 << 20}

// ImportResult says what Import did.
type ImportResult struct {
	// Imported are the paths installed, in the order they were.
	Imported []store.Path
	// Present are the paths the store had already. Their attestations
	// in the archive that verify under the policies and are of the bytes
	// the store has are kept too (so stores combine attestations).
	Present []store.Path
	// Kept counts the attestations added to the store.
	Kept int
	// Decisions are each policy's decision on each path imported.
	Decisions []*trust.Decision
	// Bytes is the size of the layers read.
	Bytes int64
}

// RefusedError is an archive that Import refused: nothing was imported.
type RefusedError struct {
	Archive  string
	Problems []error
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "importing %s: refused, nothing imported:", e.Archive)
	for _, p := range e.Problems {
		b.WriteString("\n\t" + strings.ReplaceAll(p.Error(), "\n", "\n\t"))
	}
	return b.String()
}

// Import reads the archive in dir into the store t, all or nothing. Every
// path the store lacks must be admitted by every policy (its attestations
// checked against the policies' keys, or a fixed-output path's pin) before
// any layer is read; then every layer is extracted into the store's
// temporary directory and checked (digests, the diff id its statements
// bind, its content hash, a pin) before the first path is installed; then
// they are installed through t.Install, references first. A path's
// references must be in the archive or in the store.
func Import(ctx context.Context, t Target, dir string, opts ImportOptions) (*ImportResult, error) {
	if len(opts.Policies) == 0 {
		return nil, fmt.Errorf("importing %s: no trust policy says what to admit (give one with trust in a #Policy)", dir)
	}
	lim := opts.Limits
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultLimits.MaxBytes
	}
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = DefaultLimits.MaxEntries
	}
	a, err := Open(dir)
	if err != nil {
		return nil, err
	}
	gcLock, err := t.LockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	var all []store.Path
	inArchive := map[store.Path]bool{}
	for _, e := range a.Entries {
		all = append(all, e.Path)
		all = append(all, e.References...)
		inArchive[e.Path] = true
	}
	valid, err := t.ValidPaths(ctx, all)
	if err != nil {
		return nil, err
	}
	res := &ImportResult{}
	refused := &RefusedError{Archive: dir}
	var todo []*Entry
	keys := trust.Keys{}
	for _, p := range opts.Policies {
		for id, k := range p.Keys() {
			keys[id] = k
		}
	}
	kept := map[store.Path][][]byte{}
	for _, e := range a.Entries {
		if valid[e.Path] {
			res.Present = append(res.Present, e.Path)
			if envs, err := sameBytes(ctx, t, e, a.Envelopes[e.Path], keys); err != nil {
				return nil, err
			} else {
				kept[e.Path] = envs
			}
			continue
		}
		for _, r := range e.References {
			if r != e.Path && !inArchive[r] && !valid[r] {
				refused.Problems = append(refused.Problems, fmt.Errorf("%s: its reference %s is neither in the archive nor in the store", e.Path, r))
			}
		}
		ds, envs, err := admit(e, a.Envelopes[e.Path], keys, opts)
		if err != nil {
			refused.Problems = append(refused.Problems, err)
			continue
		}
		for _, d := range ds {
			for _, v := range d.Violations {
				refused.Problems = append(refused.Problems, v)
			}
		}
		res.Decisions = append(res.Decisions, ds...)
		kept[e.Path] = envs
		todo = append(todo, e)
	}
	if len(refused.Problems) > 0 {
		return nil, refused
	}
	order, err := installOrder(todo)
	if err != nil {
		return nil, err
	}
	// Every layer extracted and checked before anything is installed.
	staged := map[store.Path]string{}
	var tmps []string
	defer func() {
		for _, tmp := range tmps {
			fstree.RemoveTree(tmp)
		}
	}()
	l := layout.Path(a.Dir)
	for _, e := range order {
		tmp, err := t.TempDir("add-import-")
		if err != nil {
			return nil, err
		}
		tmps = append(tmps, tmp)
		out := filepath.Join(tmp, "out")
		staged[e.Path] = out
		if err := stage(l, e, out, lim); err != nil {
			return nil, &RefusedError{Archive: dir, Problems: []error{err}}
		}
		res.Bytes += e.Layer.Size
	}
	for _, e := range order {
		want := e
		_, err := t.Install(ctx, store.InstallRequest{
			Path:       e.Path,
			Source:     staged[e.Path],
			References: e.References,
			Deriver:    e.Deriver,
			CA:         e.CA,
			Check: func(_ string, info *store.PathInfo) error {
				if info.ContentHash != want.ContentHash {
					return fmt.Errorf("%s: its content hashes to %s, its manifest says %s", want.Path, info.ContentHash, want.ContentHash)
				}
				if !slices.Equal(info.References, want.References) {
					return fmt.Errorf("%s: its content refers to %v, its manifest says %v", want.Path, info.References, want.References)
				}
				return nil
			},
		})
		if err != nil {
			return res, fmt.Errorf("importing %s: %w (paths installed before it stay: each was admitted)", dir, err)
		}
		res.Imported = append(res.Imported, e.Path)
		if err := keep(opts.Attestations, e.Path, kept[e.Path], res); err != nil {
			return res, err
		}
	}
	for _, p := range res.Present {
		if err := keep(opts.Attestations, p, kept[p], res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// keep adds envs to the attestations of p.
func keep(dir trust.Dir, p store.Path, envs [][]byte, res *ImportResult) error {
	if dir == "" {
		return nil
	}
	for _, env := range envs {
		_, added, err := dir.Add(p.Base(), env)
		if err != nil {
			return err
		}
		if added {
			res.Kept++
		}
	}
	return nil
}

// sameBytes returns the envelopes of e that verify under keys, if the
// store's path e.Path is what e describes (content hash, references,
// deriver: the layer follows from the content).
func sameBytes(ctx context.Context, t Target, e *Entry, envs [][]byte, keys trust.Keys) ([][]byte, error) {
	info, ok, err := t.QueryPathInfo(ctx, e.Path)
	if err != nil || !ok {
		return nil, err
	}
	if info.ContentHash != e.ContentHash || info.Deriver != e.Deriver || !slices.Equal(info.References, e.References) {
		return nil, nil
	}
	var out [][]byte
	for _, env := range envs {
		v, err := trust.VerifyEnvelope(env, keys)
		if err != nil {
			continue
		}
		if len(v.Attestations) > 0 && v.Attestations[0].Subject.Equal(e.Subject()) {
			out = append(out, env)
		}
	}
	return out, nil
}

// admit decides whether e may be imported under opts' policies; it
// returns the decisions and the envelopes that counted.
func admit(e *Entry, envs [][]byte, keys trust.Keys, opts ImportOptions) ([]*trust.Decision, [][]byte, error) {
	c := trust.Candidate{Subject: e.Subject()}
	if e.CA != "" {
		fod := &store.Derivation{Name: e.Path.Name, OutputHash: e.CA}
		p, err := fod.Path()
		if err != nil || p != e.Path {
			return nil, nil, fmt.Errorf("%s: claims the pin %s, but that pin's path is %s", e.Path, e.CA, p)
		}
		if len(e.References) > 0 {
			return nil, nil, fmt.Errorf("%s: a fixed-output path with references", e.Path)
		}
		c.Pinned = true
	}
	var atts []trust.Attestation
	var counted [][]byte
	var problems []string
	for i, env := range envs {
		v, err := trust.VerifyEnvelope(env, keys)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: attestation %d: %w", e.Path, i+1, err)
		}
		for _, p := range v.Problems {
			problems = append(problems, p.String())
		}
		if len(v.Attestations) > 0 && v.Attestations[0].Subject.Equal(c.Subject) {
			counted = append(counted, env)
		}
		atts = append(atts, v.Attestations...)
	}
	ds := trust.Admit(opts.Policies, c, atts, opts.Now)
	for _, d := range ds {
		if d.Admitted() {
			continue
		}
		// Say why the signatures there are did not count.
		notes := append(slices.Clone(d.Ignored), problems...)
		for _, v := range d.Violations {
			v.NotCounted = notes
		}
	}
	return ds, counted, nil
}

// stage extracts e's layer to out and checks its content.
func stage(l layout.Path, e *Entry, out string, lim LayerLimits) error {
	rc, err := l.Blob(e.Layer.Digest)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	defer rc.Close()
	if err := ReadLayer(rc, e.Layer, e.DiffID, e.Path, e.Size, out, lim); err != nil {
		return err
	}
	tree, err := fstree.HashTree(out, fstree.HashOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if store.OutputHash(tree.Hash) != e.ContentHash {
		return fmt.Errorf("%s: %w: its content hashes to %s, its manifest says %s", e.Path, errRefused, tree.Hash, e.ContentHash)
	}
	switch {
	case strings.HasPrefix(e.CA, "blake3:"):
		if tree.Hash.String() != e.CA {
			return fmt.Errorf("%s: %w: its content hashes to %s, its pin is %s", e.Path, errRefused, tree.Hash, e.CA)
		}
	case strings.HasPrefix(e.CA, "h1:"):
		if e.GoModule == "" {
			return fmt.Errorf("%s: %w: an h1: pin without the module@version it is of", e.Path, errRefused)
		}
		sum, err := dirhash.HashDir(out, e.GoModule, dirhash.Hash1)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if sum != e.CA {
			return fmt.Errorf("%s: %w: module %s hashes to %s, its pin is %s", e.Path, errRefused, e.GoModule, sum, e.CA)
		}
	case e.CA != "":
		return fmt.Errorf("%s: %w: unknown kind of pin %q", e.Path, errRefused, e.CA)
	}
	return nil
}

// installOrder sorts es so that each comes after its references among
// them.
func installOrder(es []*Entry) ([]*Entry, error) {
	byPath := map[store.Path]*Entry{}
	for _, e := range es {
		byPath[e.Path] = e
	}
	state := map[store.Path]int{} // 1 visiting, 2 done
	var out []*Entry
	var visit func(e *Entry) error
	visit = func(e *Entry) error {
		switch state[e.Path] {
		case 1:
			return fmt.Errorf("%w: %s refers to itself through other paths", errRefused, e.Path)
		case 2:
			return nil
		}
		state[e.Path] = 1
		for _, r := range e.References {
			if d := byPath[r]; d != nil && r != e.Path {
				if err := visit(d); err != nil {
					return err
				}
			}
		}
		state[e.Path] = 2
		out = append(out, e)
		return nil
	}
	for _, e := range es {
		if err := visit(e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// IsRefused reports whether err is an archive refused.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r) || errors.Is(err, errRefused)
}
