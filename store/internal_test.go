package store

import "context"

// IndirectRoots returns the recorded indirect roots, sorted, whether or
// not their links still point into the store: for the tests of GC.
func (s *Store) IndirectRoots(ctx context.Context) ([]string, error) {
	return indirectRoots(ctx, s.db)
}
