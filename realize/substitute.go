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
// make its name. Substitute trusts src to say which content a path has:
// it checks no signature, so src must be trusted.
func Substitute(ctx context.Context, st *store.Store, src Source, ps ...store.Path) ([]store.Path, error) {
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
		if _, err := substituteOne(ctx, st, src, infos[p], nil); err != nil {
			return done, err
		}
		done = append(done, p)
	}
	return done, nil
}

// substituteOne copies the path info describes from src into st; lock,
// if not nil, is its lock, held by the caller.
func substituteOne(ctx context.Context, st *store.Store, src Source, info *store.PathInfo, lock *store.Lock) (*store.PathInfo, error) {
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
		Check: func(_ string, got *store.PathInfo) error {
			if got.ContentHash != info.ContentHash {
				return fmt.Errorf("substituting %s: its content hashes to %s, the source says %s", p, got.ContentHash, info.ContentHash)
			}
			if !slices.Equal(got.References, info.References) {
				return fmt.Errorf("substituting %s: its content refers to %v, the source says %v", p, got.References, info.References)
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
