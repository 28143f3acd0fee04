package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Indirect roots are symlinks outside the store, such as the ./result
// links realize makes, recorded in the roots table by their absolute
// path. A link keeps its target (and the target's closure) alive as long
// as it exists and points at a valid path of this store; GC forgets the
// others. Moving or deleting a link is all it takes to release its path.

// AddRoot records link (made absolute) as an indirect root: on disk
// (roots/<hash of link>, a symlink to it) and in the database, durably.
// Record it before pointing the link into the store: a root whose link
// does not point into the store yet keeps nothing alive, but a link not
// recorded does not protect its target.
func (s *Store) AddRoot(ctx context.Context, link string) (err error) {
	defer s.annotate(&err)
	link, err = filepath.Abs(link)
	if err != nil {
		return fmt.Errorf("recording the root %s: %w", link, err)
	}
	if err := s.writeRootRecord(link); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO roots(link) VALUES (?) ON CONFLICT(link) DO NOTHING`, link); err != nil {
		return fmt.Errorf("recording the root %s: %w", link, err)
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("recording the root %s: %w", link, err)
	}
	return nil
}

// indirectRoots returns the recorded indirect roots, sorted, whether or
// not their links still point into the store.
func indirectRoots(ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT link FROM roots ORDER BY link`)
	if err != nil {
		return nil, fmt.Errorf("listing roots: %w", err)
	}
	defer rows.Close()
	var links []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, err
		}
		links = append(links, l)
	}
	return links, rows.Err()
}

// linkTarget returns the store path link points at (or into), if it is a
// symlink into this store, directly or through other symlinks.
func (s *Store) linkTarget(link string) (Path, bool) {
	target, err := os.Readlink(link)
	if err != nil {
		return Path{}, false
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	storeDir := filepath.Join(s.Dir, "store")
	rel, ok := strings.CutPrefix(filepath.Clean(target), storeDir+"/")
	if !ok {
		// Through other symlinks, or the store's directory is reached
		// through one.
		resolved, err := filepath.EvalSymlinks(link)
		if err != nil {
			return Path{}, false
		}
		realStore, err := filepath.EvalSymlinks(storeDir)
		if err != nil {
			return Path{}, false
		}
		if rel, ok = strings.CutPrefix(resolved, realStore+"/"); !ok {
			return Path{}, false
		}
	}
	base, _, _ := strings.Cut(rel, "/")
	p, err := ParsePath(base)
	if err != nil {
		return Path{}, false
	}
	return p, true
}

// LinkRoot points link at p's physical location and records link as an
// indirect root, so p (and its closure) stays as long as link points at
// it: the store's way to add a permanent root, as Nix's addPermRoot. An
// older link is replaced; a file or directory at link that is not a
// symlink is not. It holds the GC lock shared while it checks that p is
// valid and makes the link.
func (s *Store) LinkRoot(ctx context.Context, link string, p Path) error {
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("not replacing %s: it exists and is not a symlink", link)
	}
	gcLock, err := s.LockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gcLock.Unlock()
	if ok, err := s.ValidPaths(ctx, []Path{p}); err != nil {
		return err
	} else if !ok[p] {
		return fmt.Errorf("not linking %s: %s was garbage-collected since it was realized; realize again", link, p)
	}
	// Recorded before it points into the store (see AddRoot).
	if err := s.AddRoot(ctx, link); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(link), "."+filepath.Base(link)+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(s.Physical(p), tmp); err != nil {
		return fmt.Errorf("linking %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("linking %s: %w", link, err)
	}
	// The link is durable too: it may be on another file system.
	if err := syncDir(filepath.Dir(link)); err != nil {
		return fmt.Errorf("linking %s: %w", link, err)
	}
	return nil
}

// syncDir makes the entries of the directory dir durable (fsync); on a
// file system that cannot sync a directory, there is nothing more to do.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}
