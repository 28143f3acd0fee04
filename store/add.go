package store

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Add copies the file or tree at src into the store, pinned by its content:
// the path is the one a fixed-output derivation named name with the pin
// blake3:<tree hash> has (a #LocalFile of the same file), so a build that
// fetches it later finds it valid.
func (s *Store) Add(ctx context.Context, src, name string) (Path, error) {
	return s.add(ctx, src, name, nil)
}

// add is Add for content that may refer to the store paths refs (which
// must be valid): those it mentions become its references.
func (s *Store) add(ctx context.Context, src, name string, refs []Path) (Path, error) {
	gcLock, err := s.LockGC(ctx, false)
	if err != nil {
		return Path{}, err
	}
	defer gcLock.Unlock()
	tmp, err := os.MkdirTemp(filepath.Join(s.Dir, "tmp"), "add-")
	if err != nil {
		return Path{}, err
	}
	defer RemoveTree(tmp)
	staged := filepath.Join(tmp, "out")
	if err := copyTree(src, staged); err != nil {
		return Path{}, fmt.Errorf("adding %s: %w", src, err)
	}
	// The hash depends on content and executable bits only, so it can be
	// taken before the tree is made read-only (which must come after the
	// move: an ordinary user cannot move a read-only directory).
	opts := HashOptions{}
	byHash := make(map[DrvHash]Path, len(refs))
	if len(refs) > 0 {
		cands := make([]DrvHash, len(refs))
		for i, r := range refs {
			cands[i] = r.Hash
			byHash[r.Hash] = r
		}
		opts.Refs = NewRefScanner(cands)
	}
	tree, err := HashTree(staged, opts)
	if err != nil {
		return Path{}, fmt.Errorf("adding %s: %w", src, err)
	}
	d := &Derivation{Name: name, OutputHash: tree.Hash.String()}
	p, err := d.Path()
	if err != nil {
		return Path{}, fmt.Errorf("adding %s: %w", src, err)
	}
	lock, err := s.LockPath(ctx, p)
	if err != nil {
		return Path{}, err
	}
	defer lock.Unlock()
	if _, ok, err := s.QueryPathInfo(ctx, p); err != nil || ok {
		return p, err
	}
	if _, err := os.Lstat(s.Physical(p)); err == nil {
		if err := RemoveTree(s.Physical(p)); err != nil {
			return Path{}, err
		}
	}
	if err := os.Rename(staged, s.Physical(p)); err != nil {
		return Path{}, fmt.Errorf("adding %s: %w", src, err)
	}
	if err := Canonicalize(s.Physical(p)); err != nil {
		RemoveTree(s.Physical(p))
		return Path{}, fmt.Errorf("adding %s: %w", src, err)
	}
	info := &PathInfo{Path: p, ContentHash: tree.Hash, Size: tree.Size, Files: tree.Files, Deriver: p.Hash, Registered: s.Now().Unix(), CA: d.OutputHash}
	for _, h := range tree.Refs {
		info.References = append(info.References, byHash[h])
	}
	if err := s.register(ctx, info, nil); err != nil {
		RemoveTree(s.Physical(p))
		return Path{}, err
	}
	return p, nil
}

// copyTree copies regular files (keeping the executable bit), directories
// and symlinks; anything else is an error.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			return os.Mkdir(target, 0o755)
		case fi.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case fi.Mode().IsRegular():
			return copyFile(path, target, fi.Mode().Perm()&0o111 != 0)
		}
		return fmt.Errorf("%s: not a regular file, directory or symlink", path)
	})
}

func copyFile(src, dst string, exec bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	mode := os.FileMode(0o644)
	if exec {
		mode = 0o755
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
