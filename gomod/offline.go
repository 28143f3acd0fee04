package gomod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/modfetch"
)

// checkOffline runs go list again as a build runs it: offline, in a module
// cache that holds the pins alone, laid out as builtin:go-build lays them
// out. When that fails the build also needs the go.mod files of the main
// module's graph (a #GoModFiles input): they are fetched, checked against
// the main module's go.sum and hashed as builtin:fetch-gomod-graph lays
// them out, and the check is run again with them.
func (r *Resolver) checkOffline(ctx context.Context, tc *Toolchain, src *Source, packages []string, optional map[string]bool, deps []Module) (*ModFiles, error) {
	modcache := filepath.Join(src.tmp, "offline")
	for _, d := range deps {
		if err := r.linkPin(modcache, d); err != nil {
			return nil, err
		}
	}
	env := r.goEnv(tc, modcache, "off")
	if _, err := r.goList(ctx, tc, src, packages, optional, env); err == nil {
		return nil, nil
	}
	r.logf("%s: loading its module graph offline also needs the go.mod files its go.sum lists", src.Module)
	tree := filepath.Join(src.tmp, "modfiles")
	mf, err := r.modFiles(ctx, src, tree)
	if err != nil {
		return nil, err
	}
	if _, err := modfetch.LinkModFiles(modcache, tree); err != nil {
		return nil, err
	}
	if _, err := r.goList(ctx, tc, src, packages, optional, env); err != nil {
		return nil, fmt.Errorf("%s cannot be built offline with its pins and the go.mod files its go.sum lists: %w", src.Module, err)
	}
	return mf, nil
}

// linkPin lays out one pinned module in the module cache at modcache as
// builtin:go-build does (modfetch.LinkModule), from the resolver's module
// cache, where go list extracted it.
func (r *Resolver) linkPin(modcache string, m Module) error {
	ep, ev, err := escaped(m.Path, m.Version)
	if err != nil {
		return err
	}
	extracted := filepath.Join(r.modCache(), filepath.FromSlash(strings.TrimSuffix(ep, "/@v/"))+"@"+ev)
	if _, err := os.Stat(extracted); err != nil {
		return fmt.Errorf("%s was not extracted by go list: %w", m, err)
	}
	return modfetch.LinkModule(modcache, module.Version{Path: m.Path, Version: m.Version}, m.Sum, extracted)
}

// modFilesJobs is how many go.mod files are fetched at once.
const modFilesJobs = 16

// modFiles fetches the go.mod file of every module version whose go.mod
// sum src's go.sum lists (from the resolver's module cache when it has a
// copy that matches), checks each against that sum, lays them out below
// tree as builtin:fetch-gomod-graph does and returns the tree's hash: the
// pin of a #GoModFiles with input src.
func (r *Resolver) modFiles(ctx context.Context, src *Source, tree string) (*ModFiles, error) {
	goSum, err := readGoSum(filepath.Join(src.Dir, "go.sum"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Module, err)
	}
	sums := goSum.GoMods
	errs := make([]error, len(sums))
	next := make(chan int)
	var wg sync.WaitGroup
	for range modFilesJobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = r.modFile(ctx, sums[i], tree)
			}
		}()
	}
	for i := range sums {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("the go.mod files %s's go.sum lists: %w", src.Module, err)
		}
	}
	info, err := fstree.HashTree(tree, fstree.HashOptions{})
	if err != nil {
		return nil, err
	}
	return &ModFiles{Hash: info.Hash.String(), Files: len(sums)}, nil
}

// modFile puts one checked go.mod file into the tree.
func (r *Resolver) modFile(ctx context.Context, s modfetch.GoModSum, tree string) error {
	rel := filepath.FromSlash(s.File())
	cached := filepath.Join(r.modCache(), "cache", "download", rel)
	b, err := os.ReadFile(cached)
	if sum, herr := modfetch.HashGoMod(b); err != nil || herr != nil || sum != s.Sum {
		if b, err = r.Proxy.GoMod(ctx, s.Mod.Path, s.Mod.Version); err != nil {
			return err
		}
		sum, err := modfetch.HashGoMod(b)
		if err != nil {
			return err
		}
		if sum != s.Sum {
			return fmt.Errorf("SECURITY ERROR: %s/go.mod: the module proxy served content with sum %s, go.sum says %s", s, sum, s.Sum)
		}
		if err := writeFileAtomic(cached, b); err != nil {
			return err
		}
	}
	p := filepath.Join(tree, filepath.FromSlash(modfetch.ModFilesDir), rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// GoModFiles returns the pin of the go.mod files of src's module graph
// (a #GoModFiles with input src): every go.mod its go.sum lists, checked
// against it and laid out as builtin:fetch-gomod-graph lays them out.
func (r *Resolver) GoModFiles(ctx context.Context, src *Source) (*ModFiles, error) {
	tree, err := os.MkdirTemp(src.tmp, "modfiles-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tree)
	return r.modFiles(ctx, src, tree)
}
