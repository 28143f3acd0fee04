package pins

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"hephc.dev/hephc/gomod"
)

// Local plans refreshing the pins of #LocalFile sources whose content
// changed and resolving the programs built from a local module again,
// moving no module: what hephc update --local does after a change to the
// configuration's own sources.
func (u *Updater) Local(ctx context.Context) error {
	if err := u.localFiles(); err != nil {
		return err
	}
	return u.resolveLocals(ctx)
}

// localFiles refreshes the pins of #LocalFile sources whose content
// changed.
func (u *Updater) localFiles() error {
	for _, lf := range u.C.LocalFiles {
		_, h, err := u.local(lf)
		if err != nil {
			return err
		}
		if h != lf.Hash {
			if err := u.C.SetHash(lf.Attr, lf.HashLit, h); err != nil {
				return err
			}
			u.Changes = append(u.Changes, Change{lf.Attr, lf.File + " " + lf.Hash + " → " + h})
		}
	}
	return nil
}

// local copies (once) the local source lf as builtin:fetch-file does and
// returns the copy and its hash.
func (u *Updater) local(lf *LocalFile) (*gomod.Source, string, error) {
	if l, ok := u.locals[lf]; ok {
		return l.src, l.hash, nil
	}
	if !filepath.IsLocal(lf.File) {
		return nil, "", fmt.Errorf("%s: file %q is not below the configuration's directory", lf.Attr, lf.File)
	}
	// A pin of a tree that holds the pin itself never holds: refused
	// before copying when no filter leaves the configuration's files out.
	own := func(root string) error {
		for _, f := range append(slices.Sorted(maps.Keys(u.C.Files)), filepath.Join(u.C.Dir, LockFile)) {
			rel, err := filepath.Rel(filepath.Join(u.C.Dir, lf.File), f)
			if err != nil || !filepath.IsLocal(rel) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(root, rel)); err == nil {
				return fmt.Errorf("%s: %s holds the configuration's own %s, whose pins change with it: exclude it from the source", lf.Attr, lf.File, filepath.Base(f))
			}
		}
		return nil
	}
	if lf.Filter.IsZero() {
		if err := own(filepath.Join(u.C.Dir, lf.File)); err != nil {
			return nil, "", err
		}
	}
	src, h, err := gomod.LocalSource(u.C.Dir, lf.File, lf.Filter)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", lf.Attr, err)
	}
	u.locals[lf] = localCopy{src, h}
	if err := own(src.Dir); err != nil {
		return nil, "", err
	}
	return src, h, nil
}

// localCopy is a local source copied for resolving, and its hash.
type localCopy struct {
	src  *gomod.Source
	hash string
}

// resolveLocals resolves the programs built from a local module whose
// pin is current or planned to be (a stale one is hephc update --local's
// to refresh).
func (u *Updater) resolveLocals(ctx context.Context) error {
	for _, p := range u.C.LocalPrograms {
		_, h, err := u.local(p.Local)
		if err != nil {
			return err
		}
		if planned, ok := u.C.plan().expect().hashes[p.Local.Attr]; h == p.Local.Hash || ok && planned == h {
			if err := u.resolveLocal(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolveLocal resolves the program p built from a local module, as
// resolve does one built from a pinned module: its main module is the
// #LocalFile's tree, its go.mod and go.sum the trust root of its deps.
func (u *Updater) resolveLocal(ctx context.Context, p *Program) error {
	if u.resolved[p] {
		return nil
	}
	u.resolved[p] = true
	if p.Go == nil || p.Go.Path != gomod.ToolchainModule {
		return fmt.Errorf("%s: its input go is not a pinned %s module", p.Attr, gomod.ToolchainModule)
	}
	src, _, err := u.local(p.Local)
	if err != nil {
		return err
	}
	if src.Path == "" {
		return fmt.Errorf("%s: its source %s (%s) has no go.mod: hephc builds a program in its own module", p.Attr, p.Local.Attr, p.Local.File)
	}
	tc, err := u.toolchain(ctx, p.Go)
	if err != nil {
		return err
	}
	res, err := u.R.Resolve(ctx, src, tc, p.Packages, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", p.Attr, err)
	}
	text := ""
	if deps := describeDeps(modulesOf(p.Deps), res.Deps); deps != "" {
		text = "deps: " + deps
	}
	return u.planResolution(ctx, p, src, tc, res, text)
}
