package store

import (
	"context"
	"fmt"
	"path/filepath"

	"hephc.dev/hephc/fstree"
)

// Add copies the file or tree at src into the store, pinned by its content:
// the path is the one a fixed-output derivation named name with the pin
// blake3:<tree hash> has (a #LocalFile of the same file), so a build that
// fetches it later finds it valid. The content may refer to the valid
// paths refs: those it mentions become its references.
func (s *Store) Add(ctx context.Context, src, name string, refs ...Path) (_ Path, err error) {
	defer s.annotate(&err)
	gcLock, err := s.LockGC(ctx, false)
	if err != nil {
		return Path{}, err
	}
	defer gcLock.Unlock()
	tmp, err := s.TempDir("add-")
	if err != nil {
		return Path{}, err
	}
	defer fstree.RemoveTree(tmp)
	staged := filepath.Join(tmp, "out")
	if _, _, err := fstree.CopyTree(src, staged); err != nil {
		return Path{}, fmt.Errorf("adding %s: %w", src, err)
	}
	// The path is named by the content's hash: it is known before the
	// content goes in, and Install finds the same.
	tree, err := fstree.HashTree(staged, fstree.HashOptions{})
	if err != nil {
		return Path{}, fmt.Errorf("adding %s: %w", src, err)
	}
	d := &Derivation{Name: name, OutputHash: tree.Hash.String()}
	p, err := d.Path()
	if err != nil {
		return Path{}, fmt.Errorf("adding %s: %w", src, err)
	}
	_, err = s.Install(ctx, InstallRequest{
		Path: p, Source: staged, References: refs, Deriver: p.Hash, CA: d.OutputHash,
		Check: func(_ string, info *PathInfo) error {
			if info.ContentHash != tree.Hash {
				return fmt.Errorf("adding %s: its copy changed from %s to %s", src, tree.Hash, info.ContentHash)
			}
			return nil
		},
	})
	if err != nil {
		return Path{}, err
	}
	return p, nil
}
