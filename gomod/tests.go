package gomod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/modfetch"
)

// ResolveTests works out the modules the tests of packages (go test's
// packages, relative to the module root or import paths) read that the
// program's build (res, from Resolve) does not: go list -deps -test with
// the pinned toolchain in src, each module pinned by the sum in src's
// go.sum, then checked as a test runs, offline with the build's pins and
// these alone. The result is sorted by path, then version.
func (r *Resolver) ResolveTests(ctx context.Context, src *Source, tc *Toolchain, res *Resolution, packages []string) ([]Module, error) {
	if len(packages) == 0 {
		packages = []string{"./..."}
	}
	for _, p := range packages {
		if len(p) == 0 || p[0] == '-' || containsSpace(p) {
			return nil, fmt.Errorf("%s: test package %q: want ./DIR or an import path", src.Module, p)
		}
	}
	// A package the configuration names that this version of the module
	// does not have (an update to an older one) cannot be resolved; its
	// test would not build: said, and left out.
	var present []string
	for _, p := range packages {
		if dir, ok := strings.CutPrefix(p, "./"); ok && !strings.Contains(dir, "...") {
			if fi, err := os.Stat(filepath.Join(src.Dir, filepath.FromSlash(dir))); err != nil || !fi.IsDir() {
				r.logf("%s has no package %s: its tests are left out of the resolution (the test fails to build until tests.go.packages drops it)", src.Module, p)
				continue
			}
		}
		present = append(present, p)
	}
	if len(present) == 0 {
		return nil, nil
	}
	packages = present
	r.logf("resolving the tests of %s with %s", src.Module, tc.GoVersion)
	pkgs, err := r.goList(ctx, tc, src, packages, nil, r.goEnv(tc, r.modCache(), r.Proxy.String()), "-test")
	if err != nil {
		return nil, fmt.Errorf("its tests: %w", err)
	}
	goSum, err := readGoSum(filepath.Join(src.Dir, "go.sum"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Module, err)
	}
	built := make(map[string]bool)
	for _, d := range res.Deps {
		built[d.String()] = true
	}
	var deps []Module
	for _, p := range pkgs {
		m := p.Module
		if p.Standard || m == nil || m.Main || built[m.Path+"@"+m.Version] {
			continue
		}
		if m.Replace != nil {
			return nil, fmt.Errorf("%s: %s is replaced by %s@%s", src.Module, m.Path, m.Replace.Path, m.Replace.Version)
		}
		built[m.Path+"@"+m.Version] = true
		sum, ok := goSum.Zips[module.Version{Path: m.Path, Version: m.Version}]
		if !ok {
			return nil, fmt.Errorf("%s: its go.sum has no sum for %s@%s, which its tests need: go test refuses to run offline without it", src.Module, m.Path, m.Version)
		}
		deps = append(deps, Module{Path: m.Path, Version: m.Version, Sum: sum})
	}
	slices.SortFunc(deps, compareModules)
	if err := r.checkTestsOffline(ctx, tc, src, res, packages, deps); err != nil {
		return nil, err
	}
	return deps, nil
}

// checkTestsOffline runs go list -deps -test again as builtin:go-test
// runs go test: offline, in a module cache holding the build's pins, the
// tests' and the module graph's go.mod files (when the build needs them)
// alone.
func (r *Resolver) checkTestsOffline(ctx context.Context, tc *Toolchain, src *Source, res *Resolution, packages []string, deps []Module) error {
	modcache, err := os.MkdirTemp(src.tmp, "offline-tests-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(modcache)
	for _, d := range append(slices.Clone(res.Deps), deps...) {
		if err := r.linkPin(modcache, d); err != nil {
			return err
		}
	}
	if res.ModFiles != nil {
		if _, err := modfetch.LinkModFiles(modcache, filepath.Join(src.tmp, "modfiles")); err != nil {
			return err
		}
	}
	if _, err := r.goList(ctx, tc, src, packages, nil, r.goEnv(tc, modcache, "off"), "-test"); err != nil {
		return fmt.Errorf("its tests cannot run offline with the pins found: %w", err)
	}
	return nil
}

func containsSpace(s string) bool {
	for _, c := range s {
		if c == ' ' || c == '\t' || c == '\n' {
			return true
		}
	}
	return false
}
