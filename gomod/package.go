package gomod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/module"
)

// FetchPackage finds the module that provides package pkg at the version
// query selects, as go install PKG@QUERY does: of the module paths that
// are prefixes of pkg, the longest that exists at that version and holds
// the package's directory. It returns the fetched source (see
// FetchSource) and the package relative to the module root ("./cmd/x" or
// ".").
func (r *Resolver) FetchPackage(ctx context.Context, pkg, query string) (*Source, string, error) {
	if err := module.CheckImportPath(pkg); err != nil {
		return nil, "", fmt.Errorf("%s: not an import path: %w", pkg, err)
	}
	var tried []string
	var lastMiss *NoPackageError
	for prefix := pkg; ; {
		if module.CheckPath(prefix) == nil {
			src, rel, err := r.fetchFrom(ctx, prefix, pkg, query)
			var nf *NotFoundError
			var np *NoPackageError
			switch {
			case err == nil:
				return src, rel, nil
			case errors.As(err, &nf):
				tried = append(tried, prefix)
			case errors.As(err, &np):
				if lastMiss == nil {
					lastMiss = np
				}
			default:
				return nil, "", err
			}
		}
		i := strings.LastIndex(prefix, "/")
		if i < 0 {
			break
		}
		prefix = prefix[:i]
	}
	if lastMiss != nil {
		return nil, "", lastMiss
	}
	if query != "" && query != "latest" && len(tried) > 0 {
		return nil, "", fmt.Errorf("%s@%s: no module provides it at that version (tried %s)", pkg, query, strings.Join(tried, ", "))
	}
	return nil, "", fmt.Errorf("%s: no module provides it on the module proxy (tried %s)", pkg, strings.Join(tried, ", "))
}

// NoPackageError says that a module has no package of an import path.
type NoPackageError struct{ Module, Package string }

func (e *NoPackageError) Error() string {
	return fmt.Sprintf("module %s has no package %s", e.Module, e.Package)
}

// fetchFrom fetches module mod at query and checks it holds pkg.
func (r *Resolver) fetchFrom(ctx context.Context, mod, pkg, query string) (*Source, string, error) {
	v, err := r.Version(ctx, mod, query)
	var nf *NotFoundError
	if errors.As(err, &nf) && query != "" && query != "latest" {
		// Say so when the module exists, only not at that version.
		if latest, lerr := r.Version(ctx, mod, "latest"); lerr == nil {
			return nil, "", fmt.Errorf("%s@%s: no such version of %s (its latest is %s)", pkg, query, mod, latest)
		}
	}
	if err != nil {
		return nil, "", err
	}
	src, err := r.FetchSource(ctx, mod, v, "")
	if err != nil {
		return nil, "", err
	}
	rel := "."
	if pkg != mod {
		rel = "./" + strings.TrimPrefix(pkg, mod+"/")
	}
	if !hasGoFiles(filepath.Join(src.Dir, filepath.FromSlash(rel))) {
		src.Close()
		return nil, "", &NoPackageError{Module: mod + "@" + v, Package: pkg}
	}
	return src, rel, nil
}

// hasGoFiles reports whether a directory holds a .go file.
func hasGoFiles(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".go") {
			return true
		}
	}
	return false
}
