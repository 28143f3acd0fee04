package store

import (
	"context"
	"fmt"
	"os"

	"hephc.dev/hephc/fstree"
)

// InstallRequest is content to make valid at a store path: the output of
// a build (here or on a remote builder), a file or tree added (Add), a
// path fetched from a binary cache, or a rebuild that repairs a path.
type InstallRequest struct {
	// Path is the store path the content becomes.
	Path Path
	// Source is the file or tree to install, in a directory made with
	// TempDir (so on the store's file system, and removed by GC should
	// this process die). Install moves it into place or removes it: it
	// is gone when Install returns.
	Source string
	// Lock, if not nil, is Path's lock (LockPath), which the caller took
	// to produce Source and still holds; otherwise Install takes it.
	Lock *Lock
	// References are the valid paths the content may refer to. Those
	// whose hash the content mentions, and Path itself if it does, are
	// its references.
	References []Path
	// NotValid says the caller, holding Lock, found Path not valid after
	// it took it: Install does not look again.
	NotValid bool
	// Deriver is the derivation that made the content; CA a fixed-output
	// path's pin, "" for any other.
	Deriver DrvHash
	CA      string
	// Check, if not nil, sees the content once it is canonical and
	// hashed, before anything is registered: phys is where it is, info
	// what would be registered. An error discards the content and is
	// Install's.
	Check func(phys string, info *PathInfo) error
	// Build, if not nil, is the build that made the content, recorded
	// (status ok) in the transaction that registers it.
	Build *BuildRecord
	// Registering, if not nil, is called once the content is in place,
	// canonical, hashed and checked, when only its durable registration
	// is left (a sync and a transaction it may share with other
	// installs): a caller that runs a bounded number of builds may start
	// the next one then. It is not called for a repair.
	Registering func()
	// Repair replaces the content of Path, which must be valid, with
	// Source, which must hash to the content hash the database recorded:
	// in one atomic exchange, leaving Path's row and references as they
	// are. Check sees the new content's hash; References, Deriver, CA
	// and Build are not used.
	Repair bool
}

// Install makes req.Path valid with the content at req.Source. It is the
// one way into the store, and the only one that registers a path: under
// Path's lock it drops an unregistered leftover at Path (what a killed
// build or GC leaves), moves the content into place, makes it canonical
// and the store owner's (fstree.CanonicalizeAs), hashes it and finds its
// references in one pass, lets req.Check see it, writes its record
// (info/<hash>.json), syncs the store's file system, and registers it
// with its references in one transaction (the sync and the transaction
// shared with the installs waiting at the same time: register.go). Nothing is registered unless
// every step succeeds, and a registered path is complete, durably, and
// refers only to valid paths. An error that says the disk is full is a
// *NoSpaceError. If Path is
// valid already, the content is dropped and Install returns what the
// store knows of Path.
//
// The caller holds the GC lock shared (LockGC) from before it made
// Source's directory until the path is rooted or used.
func (s *Store) Install(ctx context.Context, req InstallRequest) (info *PathInfo, err error) {
	defer func() {
		if rerr := fstree.RemoveTree(req.Source); err == nil && rerr != nil {
			err = rerr
		}
		err = s.classify(err)
	}()
	p := req.Path
	if req.Lock == nil {
		lock, err := s.LockPath(ctx, p)
		if err != nil {
			return nil, err
		}
		defer lock.Unlock()
	} else if req.Lock.path != p {
		return nil, fmt.Errorf("installing %s: the lock held is %s's", p, req.Lock.path)
	}
	var (
		old   *PathInfo
		valid bool
	)
	if !req.NotValid || req.Lock == nil || req.Repair {
		if old, valid, err = s.QueryPathInfo(ctx, p); err != nil {
			return nil, err
		}
	}
	if req.Repair {
		if !valid {
			return nil, fmt.Errorf("repairing %s: it is not valid in the store %s", p, s.Dir)
		}
		return old, s.replace(p, req.Source, old, req.Check)
	}
	if valid {
		return old, nil
	}
	phys := s.Physical(p)
	if _, err := os.Lstat(phys); err == nil {
		if err := fstree.RemoveTree(phys); err != nil {
			return nil, fmt.Errorf("removing the unregistered %s: %w", p, err)
		}
	}
	// Into place first, then read-only: as an ordinary user, a read-only
	// directory cannot be moved to another parent. Until it is registered
	// the path is not valid, and whoever installs it next removes it.
	if err := os.Rename(req.Source, phys); err != nil {
		return nil, fmt.Errorf("moving %s into the store: %w", p, err)
	}
	info, err = s.hashInPlace(p, phys, req)
	if err == nil {
		if req.Registering != nil {
			req.Registering()
		}
		err = s.registerDurably(ctx, info, req.Build)
	}
	if err != nil {
		os.Remove(s.infoFile(p))
		fstree.RemoveTree(phys)
		return nil, err
	}
	return info, nil
}

// hashInPlace canonicalizes and hashes the content at phys, and has
// req.Check see it.
func (s *Store) hashInPlace(p Path, phys string, req InstallRequest) (*PathInfo, error) {
	if err := fstree.CanonicalizeAs(phys, s.owner); err != nil {
		return nil, err
	}
	tree, refs, err := hashTree(phys, append(req.References, p))
	if err != nil {
		return nil, err
	}
	info := &PathInfo{Path: p, ContentHash: tree.Hash, Size: tree.Size, Files: tree.Files, Deriver: req.Deriver, Registered: s.Now().Unix(), CA: req.CA, References: refs}
	if req.Check != nil {
		if err := req.Check(phys, info); err != nil {
			return nil, err
		}
	}
	return info, nil
}

// replace swaps the content of the valid path p for src, which must hash
// as old records.
func (s *Store) replace(p Path, src string, old *PathInfo, check func(string, *PathInfo) error) error {
	if err := fstree.CanonicalizeAs(src, s.owner); err != nil {
		return fmt.Errorf("repairing %s: %w", p, err)
	}
	tree, err := fstree.HashTree(src, fstree.HashOptions{})
	if err != nil {
		return fmt.Errorf("repairing %s: %w", p, err)
	}
	if check != nil {
		info := *old
		info.ContentHash, info.Size, info.Files = tree.Hash, tree.Size, tree.Files
		if err := check(src, &info); err != nil {
			return err
		}
	}
	if tree.Hash != old.ContentHash {
		return fmt.Errorf("repairing %s: the new content hashes to %s, the database recorded %s", p, tree.Hash, old.ContentHash)
	}
	// The new content is durable before it takes the old one's place,
	// and so is the path's record, rewritten in case it was lost.
	if err := s.writePathRecord(old); err != nil {
		return err
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("repairing %s: %w", p, err)
	}
	if err := fstree.Exchange(src, s.Physical(p)); err != nil {
		return fmt.Errorf("repairing %s: %w", p, err)
	}
	if err := fstree.CanonicalizeAs(s.Physical(p), s.owner); err != nil {
		return err
	}
	return s.sync()
}
