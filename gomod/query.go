package gomod

import (
	"context"
	"errors"
	"fmt"
	"go/version"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"hephc.dev/hephc/modfetch"
)

// Version resolves a version query for a module as go install PKG@QUERY
// does: "latest" (or "") is the newest release that is not retracted
// (else the newest pre-release, else the proxy's @latest, a
// pseudo-version); a complete version or pseudo-version names itself and
// must exist; a prefix (v1.2) is the newest release it matches; anything
// else (a revision) is resolved by the proxy.
func (r *Resolver) Version(ctx context.Context, path, query string) (string, error) {
	if err := module.CheckPath(path); err != nil {
		return "", err
	}
	switch {
	case query == "" || query == "latest":
		return r.newest(ctx, path, func(string) bool { return true })
	case semver.IsValid(query) && semver.Canonical(query) == query || module.IsPseudoVersion(query):
		info, err := r.Proxy.Info(ctx, path, query)
		if err != nil {
			return "", versionNotFound(path, query, err)
		}
		if info.Version != query {
			return "", fmt.Errorf("%s@%s: the module proxy answered version %s", path, query, info.Version)
		}
		return query, nil
	case semver.IsValid(query):
		prefix := query + "."
		return r.newest(ctx, path, func(v string) bool { return strings.HasPrefix(v, prefix) })
	default:
		info, err := r.Proxy.Info(ctx, path, query)
		if err != nil {
			return "", versionNotFound(path, query, err)
		}
		return info.Version, nil
	}
}

// versionNotFound says that a version does not exist, distinguishing a
// module that does not exist at all.
func versionNotFound(path, query string, err error) error {
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return &NotFoundError{What: path + "@" + query, Msg: "no such version of " + path + " on the module proxy: " + nf.Msg}
	}
	return err
}

// Upgrade returns the newest version of path within the major version of
// current that is newer than current, or current when there is none.
// A toolchain moves to the newest Go release for its platform.
func (r *Resolver) Upgrade(ctx context.Context, path, current string) (string, error) {
	if path == ToolchainModule {
		return r.newestToolchain(ctx, current)
	}
	major := semver.Major(current)
	incompatible := strings.HasSuffix(current, "+incompatible")
	v, err := r.newest(ctx, path, func(v string) bool {
		return semver.Major(v) == major && strings.HasSuffix(v, "+incompatible") == incompatible
	})
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return current, nil // nothing newer in that major version
	}
	if err != nil {
		return "", err
	}
	if semver.Compare(v, current) <= 0 {
		return current, nil
	}
	return v, nil
}

// newest is the newest version of path that keep accepts: the newest
// release, else pre-release, that is not retracted; when the proxy lists
// no tagged version at all, its @latest.
func (r *Resolver) newest(ctx context.Context, path string, keep func(string) bool) (string, error) {
	list, err := r.Proxy.Versions(ctx, path)
	var nf *NotFoundError
	if err != nil && !errors.As(err, &nf) {
		return "", err
	}
	if len(list) == 0 {
		info, lerr := r.Proxy.Latest(ctx, path)
		if lerr != nil {
			if errors.As(lerr, &nf) {
				return "", &NotFoundError{What: "module " + path, Msg: "no such module on the module proxy: " + nf.Msg}
			}
			return "", lerr
		}
		if !keep(info.Version) {
			return "", &NotFoundError{What: "module " + path, Msg: "no matching version"}
		}
		return info.Version, nil
	}
	list = slices.DeleteFunc(list, func(v string) bool { return !semver.IsValid(v) || semver.Canonical(v) != v })
	semver.Sort(list)
	retracted, err := r.retractions(ctx, path, list)
	if err != nil {
		return "", err
	}
	var pick string
	for _, wantRelease := range []bool{true, false} {
		for _, wantCompatible := range []bool{true, false} {
			for i := len(list) - 1; i >= 0 && pick == ""; i-- {
				v := list[i]
				if (semver.Prerelease(v) == "") == wantRelease && !strings.HasSuffix(v, "+incompatible") == wantCompatible && keep(v) && !retracted(v) {
					pick = v
				}
			}
		}
	}
	if pick == "" {
		return "", &NotFoundError{What: "module " + path, Msg: "no matching version that is not retracted"}
	}
	return pick, nil
}

// retractions reads the retract directives of the go.mod of a module's
// newest listed version (as the go command does), checked against the
// checksum database, and returns whether a version is retracted.
func (r *Resolver) retractions(ctx context.Context, path string, sorted []string) (func(string) bool, error) {
	none := func(string) bool { return false }
	if len(sorted) == 0 {
		return none, nil
	}
	latest := sorted[len(sorted)-1]
	b, err := r.Proxy.GoMod(ctx, path, latest)
	if err != nil {
		return nil, err
	}
	if err := r.checkGoMod(path, latest, b); err != nil {
		return nil, err
	}
	f, err := modfile.ParseLax(path+"@"+latest+"/go.mod", b, nil)
	if err != nil {
		return nil, err
	}
	if len(f.Retract) == 0 {
		return none, nil
	}
	return func(v string) bool {
		for _, rt := range f.Retract {
			if semver.Compare(rt.Low, v) <= 0 && semver.Compare(v, rt.High) <= 0 {
				return true
			}
		}
		return false
	}, nil
}

// checkGoMod checks a go.mod file the proxy served against the checksum
// database, when there is one that covers the module.
func (r *Resolver) checkGoMod(path, version string, b []byte) error {
	if r.SumDB == nil || r.SumDB.Skips(path) {
		return nil
	}
	sum, err := GoModSum(b)
	if err != nil {
		return err
	}
	return r.SumDB.Check(path, version+"/go.mod", sum)
}

// GoModSum is the h1: sum of a go.mod file, as go.sum records it.
func GoModSum(b []byte) (string, error) { return modfetch.HashGoMod(b) }

// newestToolchain is the newest Go release's toolchain for the platform
// of current, or current.
func (r *Resolver) newestToolchain(ctx context.Context, current string) (string, error) {
	curGo, platform, err := ToolchainGoVersion(current)
	if err != nil {
		return "", err
	}
	list, err := r.Proxy.Versions(ctx, ToolchainModule)
	if err != nil {
		return "", err
	}
	best, bestGo := current, curGo
	for _, v := range list {
		g, p, err := ToolchainGoVersion(v)
		if err != nil || p != platform || !isRelease(g) {
			continue
		}
		if version.Compare(g, bestGo) > 0 {
			best, bestGo = v, g
		}
	}
	return best, nil
}

// isRelease reports whether a Go version is a release (go1.26.8), not a
// release candidate or beta.
func isRelease(goVersion string) bool {
	return version.IsValid(goVersion) && !strings.ContainsAny(strings.TrimPrefix(goVersion, "go"), "abcdefghijklmnopqrstuvwxyz")
}
