package realize

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
)

// Source is a store that paths can be substituted from: what a
// substituter reads of another store, and what an exporter or a package
// server reads of this one. Each path comes with what the store knows of
// it (content hash, size, references, deriver, pin), its validity, its
// closure, and its tree as a reproducible tar stream (store.Export).
// *store.Store is one; a client of a remote store would be another.
type Source interface {
	QueryPathInfo(ctx context.Context, p store.Path) (*store.PathInfo, bool, error)
	ValidPaths(ctx context.Context, ps []store.Path) (map[store.Path]bool, error)
	Closure(ctx context.Context, ps ...store.Path) ([]store.Path, error)
	Export(ctx context.Context, p store.Path, w io.Writer) error
}

var _ Source = (*store.Store)(nil)

// Substitute makes the closure of ps valid in st by copying what st lacks
// from src, references first, each path through store.Install, and
// returns the paths it copied in that order. A path's tree comes from
// src.Export and is extracted refusing anything ExtractTar refuses
// (entries outside the path, through symlinks, twice, or more bytes than
// src says the path has); it must hash to the content hash src gives, and
// refer to exactly the references src gives; a pinned path's pin must
// make its name. Then adm, if not nil, must admit it (the store owner's
// trust policy: the CLI's Admission checks the signatures src keeps
// against it). With a nil adm, Substitute trusts src to say which
// content a path has: it checks no signature, so src must be trusted.
func Substitute(ctx context.Context, st *store.Store, src Source, adm Admission, ps ...store.Path) ([]store.Path, error) {
	gcLock, err := st.LockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	closure, err := src.Closure(ctx, ps...)
	if err != nil {
		return nil, fmt.Errorf("substituting: %w", err)
	}
	valid, err := st.ValidPaths(ctx, closure)
	if err != nil {
		return nil, err
	}
	order, infos, err := referencesFirst(ctx, src, closure)
	if err != nil {
		return nil, fmt.Errorf("substituting: %w", err)
	}
	var done []store.Path
	for _, p := range order {
		if valid[p] {
			continue
		}
		if infos[p] == nil {
			return done, fmt.Errorf("substituting %s: the source does not have it", p)
		}
		if _, err := substituteOne(ctx, st, src, infos[p], nil, admitting{adm: adm}); err != nil {
			return done, err
		}
		done = append(done, p)
	}
	return done, nil
}

// Admission admits or refuses a path copied from another store before it
// becomes valid. The CLI implements it with the trust policies (the
// store owner's, and the configuration's), so that realize imports no
// trust and the store no policy: every path a store admits from outside
// meets the same policies, whether it comes from an archive
// (archive.Import), a binary cache (registry) or another store.
type Admission interface {
	// Admit sees the candidate's content in place, canonical and hashed,
	// before anything is registered; an error refuses it, and nothing of
	// it is registered.
	Admit(ctx context.Context, c *Candidate) error
}

// Candidate is a path from another store asking to be admitted.
type Candidate struct {
	// Source is the store it comes from.
	Source Source
	// Info is what would be registered: its content hash and references
	// as hashed and found here, its deriver and pin as the source says.
	Info *store.PathInfo
	// Dir is where its content is; it must not be changed.
	Dir string
	// Attr is where the configuration writes it, "" when not known (an
	// admission then applies every rule with groups).
	Attr string
	// Pinned says it is a fixed-output path whose content was checked
	// against its pin: a policy admits it on the pin alone.
	Pinned bool
}

// NotAdmittedError is a path another store has that the Admission
// refused: nothing of it was registered. Realize builds it instead.
type NotAdmittedError struct {
	Path store.Path
	Err  error
}

func (e *NotAdmittedError) Error() string {
	return fmt.Sprintf("substituting %s: not admitted: %v", e.Path, e.Err)
}

func (e *NotAdmittedError) Unwrap() error { return e.Err }

// admitting is how one substitution is admitted: by adm (nil: as src
// says), as the derivation d written at attr (d nil when the graph is not
// known: then an h1: pin is not checked, and a path with one is not
// pinned).
type admitting struct {
	adm  Admission
	d    *store.Derivation
	attr string
}

// substituteOne copies the path info describes from src into st; lock,
// if not nil, is its lock, held by the caller; how says how it is
// admitted.
func substituteOne(ctx context.Context, st *store.Store, src Source, info *store.PathInfo, lock *store.Lock, how admitting) (*store.PathInfo, error) {
	p := info.Path
	if info.CA != "" {
		d := &store.Derivation{Name: p.Name, OutputHash: info.CA}
		if h, err := d.Hash(); err != nil || h != p.Hash || strings.HasPrefix(info.CA, "blake3:") && info.CA != info.ContentHash.String() {
			return nil, fmt.Errorf("substituting %s: its pin %s does not make it, or is not its content hash %s", p, info.CA, info.ContentHash)
		}
	}
	tmp, err := st.TempDir("add-substitute-")
	if err != nil {
		return nil, err
	}
	defer fstree.RemoveTree(tmp)
	out := filepath.Join(tmp, "out")
	if err := fetchTree(ctx, src, p, out, info.Size); err != nil {
		return nil, fmt.Errorf("substituting %s: %w", p, err)
	}
	return st.Install(ctx, store.InstallRequest{
		Path: p, Source: out, Lock: lock, References: info.References, Deriver: info.Deriver, CA: info.CA,
		Check: func(phys string, got *store.PathInfo) error {
			if got.ContentHash != info.ContentHash {
				return fmt.Errorf("substituting %s: its content hashes to %s, the source says %s", p, got.ContentHash, info.ContentHash)
			}
			if !slices.Equal(got.References, info.References) {
				return fmt.Errorf("substituting %s: its content refers to %v, the source says %v", p, got.References, info.References)
			}
			pinned := strings.HasPrefix(info.CA, "blake3:") // its content hash, checked above
			if how.d != nil && how.d.IsFixedOutput() {
				if err := verifyFixedOutput(how.d, phys, got.ContentHash); err != nil {
					return fmt.Errorf("substituting %s: %w", p, err)
				}
				pinned = true
			}
			if how.adm == nil {
				return nil
			}
			if err := how.adm.Admit(ctx, &Candidate{Source: src, Info: got, Dir: phys, Attr: how.attr, Pinned: pinned}); err != nil {
				return &NotAdmittedError{Path: p, Err: err}
			}
			return nil
		},
	})
}

// fetchTree extracts src's export of p at out, reading at most size bytes
// of files and symlinks.
func fetchTree(ctx context.Context, src Source, p store.Path, out string, size int64) error {
	pr, pw := io.Pipe()
	exported := make(chan error, 1)
	go func() {
		err := src.Export(ctx, p, pw)
		pw.CloseWithError(err)
		exported <- err
	}()
	err := fstree.ExtractTar(pr, out, p.Base(), size)
	if err == nil {
		// What follows the tree's end: the tar trailer, nothing more.
		var n int64
		n, err = io.Copy(io.Discard, io.LimitReader(pr, 1<<20))
		if err == nil && n == 1<<20 {
			err = fmt.Errorf("more data after the tree")
		}
	}
	pr.CloseWithError(fmt.Errorf("substitution stopped"))
	if eerr := <-exported; err == nil && eerr != nil {
		err = eerr
	}
	return err
}
