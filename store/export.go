package store

import (
	"context"
	"fmt"
	"io"

	"hephc.dev/hephc/fstree"
)

// Export writes the content of the valid path p to w as a reproducible
// tar stream (fstree.WriteTar): every entry under p's base name, in the
// order of the tree hash, with nothing but what the hash covers, so that
// one content hash gives one stream. It holds the GC lock shared
// meanwhile: p stays valid.
func (s *Store) Export(ctx context.Context, p Path, w io.Writer) error {
	gcLock, err := s.LockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gcLock.Unlock()
	if _, ok, err := s.QueryPathInfo(ctx, p); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("exporting %s: it is not valid in the store %s", p, s.Dir)
	}
	if err := fstree.WriteTar(w, s.Physical(p), p.Base()); err != nil {
		return fmt.Errorf("exporting %s: %w", p, err)
	}
	return nil
}
