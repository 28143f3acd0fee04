package gomod

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// Module is a pin: a module version and the h1: sum of its zip.
type Module struct {
	Path, Version, Sum string
}

func (m Module) String() string {
	if m.Version == "" {
		return m.Path // a local main module
	}
	return m.Path + "@" + m.Version
}

// Resolver resolves versions and programs for one configuration.
type Resolver struct {
	Env   Env
	Proxy *Proxy
	SumDB *SumDB // nil when GOSUMDB=off
	// Dir holds what resolving keeps between runs: a module cache, the go
	// command's build cache, extracted toolchains and the checksum
	// database's signed tree.
	Dir string
	// Log gets a line for each slow step (fetches); nil for none.
	Log io.Writer
}

// NewResolver returns a resolver for env keeping its state in dir.
func NewResolver(env Env, dir string, log io.Writer) (*Resolver, error) {
	proxy, err := NewProxy(env.GOPROXY)
	if err != nil {
		return nil, err
	}
	r := &Resolver{Env: env, Proxy: proxy, Dir: dir, Log: log}
	if r.SumDB, err = NewSumDB(env, proxy, r.dir("sumdb")); err != nil {
		return nil, err
	}
	return r, nil
}

// dir is a directory of the resolver's state, created when missing.
func (r *Resolver) dir(name string) string {
	d := filepath.Join(r.Dir, name)
	os.MkdirAll(d, 0o755)
	return d
}

// modCache is the go command's module cache for resolving.
func (r *Resolver) modCache() string { return r.dir("modcache") }

func (r *Resolver) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format+"\n", args...)
	}
}

// Source is a main module fetched for resolving: its zip checked, then
// extracted into a temporary directory of its own.
type Source struct {
	Module
	Dir   string        // the extracted module
	GoMod *modfile.File // its go.mod
	tmp   string
}

// Close removes the extracted module.
func (s *Source) Close() error { return os.RemoveAll(s.tmp) }

// FetchSource fetches path@version's zip, checks its sum against the
// checksum database (unless GOSUMDB=off or GONOSUMDB exempts it) and
// against want when want is not "", extracts it into a temporary
// directory and checks its go.mod as go install does for PKG@VERSION: it
// must declare path and have no replace or exclude directives.
func (r *Resolver) FetchSource(ctx context.Context, path, version, want string) (*Source, error) {
	if err := module.Check(path, version); err != nil {
		return nil, err
	}
	zip, sum, err := r.zip(ctx, path, version, want)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "hephc-resolve-")
	if err != nil {
		return nil, err
	}
	s := &Source{Module: Module{path, version, sum}, Dir: filepath.Join(tmp, "src"), tmp: tmp}
	if err := modzip.Unzip(s.Dir, module.Version{Path: path, Version: version}, zip); err != nil {
		s.Close()
		return nil, fmt.Errorf("extracting %s@%s: %w", path, version, err)
	}
	if err := s.readGoMod(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// zip returns the path of path@version's zip in the module cache and its
// h1: sum, fetching it when the cache lacks it. The sum is checked
// against the checksum database (unless GOSUMDB=off or GONOSUMDB exempts
// the module) and against want unless it is "", even for a zip the cache
// had (the go command may have put it there, checked against another
// module's go.sum only); a zip enters the cache only once checked.
func (r *Resolver) zip(ctx context.Context, path, version, want string) (string, string, error) {
	prefix, ev, err := escaped(path, version)
	if err != nil {
		return "", "", err
	}
	check := func(sum string) error {
		if r.SumDB != nil {
			if err := r.SumDB.Check(path, version, sum); err != nil {
				return err
			}
		}
		if want != "" && sum != want {
			return fmt.Errorf("%s@%s: hash mismatch: pinned %s, the module proxy served %s", path, version, want, sum)
		}
		return nil
	}
	dl := filepath.Join(r.modCache(), "cache", "download", filepath.FromSlash(prefix))
	zip := filepath.Join(dl, ev+".zip")
	if b, err := os.ReadFile(zip + "hash"); err == nil {
		sum := strings.TrimSpace(string(b))
		if got, err := dirhash.HashZip(zip, dirhash.Hash1); err == nil && got == sum {
			if err := check(sum); err != nil {
				return "", "", err
			}
			return zip, sum, nil
		}
	}
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", "", err
	}
	tmp, err := os.CreateTemp(dl, ".fetch-*.zip")
	if err != nil {
		return "", "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	r.logf("fetching %s@%s", path, version)
	if err := r.Proxy.Zip(ctx, path, version, tmp.Name()); err != nil {
		return "", "", err
	}
	sum, err := dirhash.HashZip(tmp.Name(), dirhash.Hash1)
	if err != nil {
		return "", "", fmt.Errorf("%s@%s: the module proxy served a corrupt zip: %w", path, version, err)
	}
	if err := check(sum); err != nil {
		return "", "", err
	}
	if err := os.Rename(tmp.Name(), zip); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(zip+"hash", []byte(sum+"\n")); err != nil {
		return "", "", err
	}
	return zip, sum, nil
}

// readGoMod reads and checks the main module's go.mod.
func (s *Source) readGoMod() error {
	p := filepath.Join(s.Dir, "go.mod")
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return fmt.Errorf("%s has no go.mod: hephc builds a program in its own module", s.Module)
	}
	if err != nil {
		return err
	}
	f, err := modfile.Parse(s.Module.String()+"/go.mod", b, nil)
	if err != nil {
		return err
	}
	if f.Module == nil || f.Module.Mod.Path != s.Path {
		declared := "no module"
		if f.Module != nil {
			declared = "module " + f.Module.Mod.Path
		}
		return fmt.Errorf("%s: its go.mod declares %s", s.Module, declared)
	}
	var directives []string
	if len(f.Replace) > 0 {
		directives = append(directives, "replace")
	}
	if len(f.Exclude) > 0 {
		directives = append(directives, "exclude")
	}
	if len(directives) > 0 {
		return fmt.Errorf("%s: its go.mod has %s directives, which would make it build differently than as a dependency; go install PKG@VERSION refuses them too", s.Module, strings.Join(directives, " and "))
	}
	s.GoMod = f
	return nil
}

// Pin returns the pin of path@version: its zip's h1: sum, checked against
// the checksum database (unless GOSUMDB=off or GONOSUMDB exempts it).
func (r *Resolver) Pin(ctx context.Context, path, version string) (Module, error) {
	if err := module.Check(path, version); err != nil {
		return Module{}, err
	}
	_, sum, err := r.zip(ctx, path, version, "")
	if err != nil {
		return Module{}, err
	}
	return Module{Path: path, Version: version, Sum: sum}, nil
}

// CheckPin returns the right pin of m's module version: the sum the
// checksum database records, looked up without fetching the module; for
// a module no checksum database covers, the sum of the zip the proxy
// serves.
func (r *Resolver) CheckPin(ctx context.Context, m Module) (Module, error) {
	if !r.Checks(m.Path) {
		return r.Pin(ctx, m.Path, m.Version)
	}
	sum, err := r.SumDB.Lookup(m.Path, m.Version)
	if err != nil {
		return Module{}, err
	}
	return Module{Path: m.Path, Version: m.Version, Sum: sum}, nil
}

// Checks reports whether a module's sums are checked against a checksum
// database (not with GOSUMDB=off, nor for a module GONOSUMDB exempts).
func (r *Resolver) Checks(path string) bool {
	return r.SumDB != nil && !r.SumDB.Skips(path)
}
