package store

import "context"

// IndirectRoots returns the recorded indirect roots, sorted, whether or
// not their links still point into the store: for the tests of GC.
func (s *Store) IndirectRoots(ctx context.Context) ([]string, error) {
	return indirectRoots(ctx, s.db)
}

// WaitingRegistrations returns how many installs wait for a group to
// register them (register.go): for the tests of group registration.
func (s *Store) WaitingRegistrations() int {
	s.registrar.mu.Lock()
	defer s.registrar.mu.Unlock()
	return len(s.registrar.queue)
}
