package store

import (
	"context"
	"fmt"
	"slices"

	"hephc.dev/hephc/fstree"
)

// RestoreMetadata makes the valid path p canonical again where it is —
// modes, times, and the store's owner (fstree.CanonicalizeAs) — and
// rewrites its record on disk from the database, without touching its
// content, which must hash to what the database recorded before and
// after: what `hephc verify --repair` does for a path whose content is
// intact but whose modes, owners or record are not. It holds p's lock;
// the caller holds the GC lock shared.
func (s *Store) RestoreMetadata(ctx context.Context, p Path) (err error) {
	defer s.annotate(&err)
	lock, err := s.LockPath(ctx, p)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	info, ok, err := s.QueryPathInfo(ctx, p)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("restoring %s: it is not valid in the store %s", p, s.Dir)
	}
	phys := s.Physical(p)
	check := func() error {
		tree, err := fstree.HashTree(phys, fstree.HashOptions{})
		if err != nil {
			return fmt.Errorf("restoring %s: %w", p, err)
		}
		if tree.Hash != info.ContentHash {
			return fmt.Errorf("restoring %s: its content hashes to %s, the database recorded %s: it must be rebuilt", p, tree.Hash, info.ContentHash)
		}
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	if err := fstree.CanonicalizeAs(phys, s.owner); err != nil {
		return fmt.Errorf("restoring %s: %w", p, err)
	}
	// Whoever could write to it before may have, until now.
	if err := check(); err != nil {
		return err
	}
	if err := s.writePathRecord(info); err != nil {
		return err
	}
	return s.sync()
}

// CheckRecord returns an error unless the record on disk of the valid
// path info describes (info/<hash>.json) says what info says: the record
// a rebuilt database would be made from.
func (s *Store) CheckRecord(info *PathInfo) error {
	r, err := readPathRecord(s.infoFile(info.Path))
	if err != nil {
		return fmt.Errorf("its record on disk: %w", err)
	}
	switch {
	case r.ContentHash != info.ContentHash:
		return fmt.Errorf("its record on disk says content hash %s, the database %s", r.ContentHash, info.ContentHash)
	case !slices.Equal(r.References, info.References):
		return fmt.Errorf("its record on disk says references %v, the database %v", r.References, info.References)
	case r.Deriver != info.Deriver || r.CA != info.CA || r.Size != info.Size || r.Files != info.Files:
		return fmt.Errorf("its record on disk says deriver %s, pin %q, %d bytes in %d files; the database %s, %q, %d in %d",
			r.Deriver, r.CA, r.Size, r.Files, info.Deriver, info.CA, info.Size, info.Files)
	}
	return nil
}
