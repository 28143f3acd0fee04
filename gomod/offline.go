package gomod

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/fstree"
)

// ModFilesDir is where the go.mod files of a module graph lie below the
// output of builtin:fetch-gomod-graph (and so below the tree hashed for
// its pin): as in a module cache, ModFilesDir/PATH/@v/VERSION.mod, escaped.
const ModFilesDir = "cache/download"

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
	if err := linkModFiles(modcache, tree); err != nil {
		return nil, err
	}
	if _, err := r.goList(ctx, tc, src, packages, optional, env); err != nil {
		return nil, fmt.Errorf("%s cannot be built offline with its pins and the go.mod files its go.sum lists: %w", src.Module, err)
	}
	return mf, nil
}

// linkPin lays out one pinned module in the module cache at modcache as
// builtin:go-build does: the extracted module (here a link to the
// resolver's module cache, where go list put it), and beside its go.mod
// (a synthesized one when it has none), its sum and its version.
func (r *Resolver) linkPin(modcache string, m Module) error {
	ep, ev, err := escaped(m.Path, m.Version)
	if err != nil {
		return err
	}
	ep = strings.TrimSuffix(ep, "/@v/")
	extracted := filepath.Join(r.modCache(), filepath.FromSlash(ep)+"@"+ev)
	if _, err := os.Stat(extracted); err != nil {
		return fmt.Errorf("%s was not extracted by go list: %w", m, err)
	}
	dir := filepath.Join(modcache, filepath.FromSlash(ep)+"@"+ev)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(extracted, dir); err != nil {
		return err
	}
	dl := filepath.Join(modcache, "cache", "download", filepath.FromSlash(ep), "@v")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(extracted, "go.mod"))
	if err != nil {
		gomod = []byte("module " + quotedPath(m.Path) + "\n")
	}
	files := map[string][]byte{
		ev + ".mod":     gomod,
		ev + ".ziphash": []byte(m.Sum + "\n"),
		ev + ".info":    fmt.Appendf(nil, "{\"Version\":%q}\n", m.Version),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dl, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func quotedPath(p string) string {
	if strings.ContainsAny(p, " \t\"") {
		return fmt.Sprintf("%q", p)
	}
	return p
}

// linkModFiles adds the go.mod files of the tree to the module cache,
// unless a pin put one there already (as builtin:go-build does).
func linkModFiles(modcache, tree string) error {
	root := filepath.Join(tree, filepath.FromSlash(ModFilesDir))
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		target := filepath.Join(modcache, "cache", "download", rel)
		if _, err := os.Lstat(target); err == nil {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.Symlink(p, target)
	})
}

// goModSum is one "/go.mod h1:" line of a go.sum.
type goModSum struct {
	mod module.Version
	sum string
}

// readGoModSums returns the go.mod sums a go.sum lists, sorted, each once.
func readGoModSums(file string) ([]goModSum, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := make(map[module.Version]string)
	var sums []goModSum
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if len(fs) != 3 {
			return nil, fmt.Errorf("go.sum:%d: want MODULE VERSION SUM", line)
		}
		v, ok := strings.CutSuffix(fs[1], "/go.mod")
		if !ok {
			continue
		}
		mv := module.Version{Path: fs[0], Version: v}
		if prev, dup := seen[mv]; dup {
			if prev != fs[2] {
				return nil, fmt.Errorf("go.sum:%d: %s@%s has two go.mod sums", line, mv.Path, mv.Version)
			}
			continue
		}
		seen[mv] = fs[2]
		sums = append(sums, goModSum{mv, fs[2]})
	}
	slices.SortFunc(sums, func(a, b goModSum) int {
		return compareModules(Module{Path: a.mod.Path, Version: a.mod.Version}, Module{Path: b.mod.Path, Version: b.mod.Version})
	})
	return sums, sc.Err()
}

// modFilesJobs is how many go.mod files are fetched at once.
const modFilesJobs = 16

// modFiles fetches the go.mod file of every module version whose go.mod
// sum src's go.sum lists (from the resolver's module cache when it has a
// copy that matches), checks each against that sum, lays them out below
// tree as builtin:fetch-gomod-graph does and returns the tree's hash: the
// pin of a #GoModFiles with input src.
func (r *Resolver) modFiles(ctx context.Context, src *Source, tree string) (*ModFiles, error) {
	sums, err := readGoModSums(filepath.Join(src.Dir, "go.sum"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Module, err)
	}
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
func (r *Resolver) modFile(ctx context.Context, s goModSum, tree string) error {
	prefix, ev, err := escaped(s.mod.Path, s.mod.Version)
	if err != nil {
		return err
	}
	rel := filepath.Join(filepath.FromSlash(prefix), ev+".mod")
	cached := filepath.Join(r.modCache(), "cache", "download", rel)
	b, err := os.ReadFile(cached)
	if sum, herr := GoModSum(b); err != nil || herr != nil || sum != s.sum {
		if b, err = r.Proxy.GoMod(ctx, s.mod.Path, s.mod.Version); err != nil {
			return err
		}
		sum, err := GoModSum(b)
		if err != nil {
			return err
		}
		if sum != s.sum {
			return fmt.Errorf("SECURITY ERROR: %s@%s/go.mod: the module proxy served content with sum %s, go.sum says %s", s.mod.Path, s.mod.Version, sum, s.sum)
		}
		if err := writeFileAtomic(cached, b); err != nil {
			return err
		}
	}
	p := filepath.Join(tree, filepath.FromSlash(ModFilesDir), rel)
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
