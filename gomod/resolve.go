package gomod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"go/version"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/modfetch"
)

// Resolution is what a program built from a main module needs: exactly
// the modules that provide its packages' dependencies, as the go command
// selects them in the main module for CGO_ENABLED=0 GOOS=linux
// GOARCH=amd64 with the pinned toolchain, each pinned by the sum in the
// main module's go.sum.
type Resolution struct {
	Main     Module
	Packages []Package // the packages asked for, as go list found them
	Deps     []Module  // sorted by path, then version
	// ModFiles is set when the deps' go.mod files are not enough for the
	// go command to load the module graph offline: then the build needs
	// the go.mod files of every module the main module's go.sum lists.
	ModFiles *ModFiles
}

// Package is a package a program is built from.
type Package struct {
	ImportPath string
	Name       string
	Doc        string // its doc comment's first sentence
}

// ModFiles are the go.mod files of a main module's whole module graph, as
// builtin:fetch-gomod-graph lays them out.
type ModFiles struct {
	Hash  string // blake3: tree hash of the layout
	Files int
}

// NotMainError says that a package asked for is not a main package.
type NotMainError struct{ ImportPath, Name string }

func (e *NotMainError) Error() string {
	return fmt.Sprintf("%s is not a main package (it is package %s): only commands can be built into programs", e.ImportPath, e.Name)
}

// NeedsCgoError says that a package cannot be built without cgo.
type NeedsCgoError struct{ ImportPath, File string }

func (e *NeedsCgoError) Error() string {
	return fmt.Sprintf("%s needs cgo (%s imports \"C\"), and programs are built with CGO_ENABLED=0", e.ImportPath, e.File)
}

// listedPackage is what go list -json says about one package.
type listedPackage struct {
	ImportPath     string
	Name           string
	Doc            string
	Dir            string
	Standard       bool
	DepOnly        bool
	Module         *listedModule
	Error          *struct{ Err string }
	IgnoredGoFiles []string
}

type listedModule struct {
	Path, Version string
	Main          bool
	Replace       *listedModule
	Error         *struct{ Err string }
}

const listFields = "ImportPath,Name,Doc,Dir,Standard,DepOnly,Module,Error,IgnoredGoFiles"

// Resolve works out what the main packages of src need, by running go
// list -deps with the pinned toolchain tc in src (packages are relative to
// the module root, "./cmd/x" or ".", or import paths), then checks that
// the pins it found suffice for an offline build laid out as hephc's
// builders lay it out, adding the module graph's go.mod files when they
// do not. A build that compiles more than main packages (u-root's busybox
// compiles its commands into a generated main) names those in libraries.
func (r *Resolver) Resolve(ctx context.Context, src *Source, tc *Toolchain, packages, libraries []string) (*Resolution, error) {
	if len(packages) == 0 {
		packages = []string{"."}
	}
	all := append(slices.Clone(packages), libraries...)
	for _, p := range all {
		if strings.HasPrefix(p, "-") || strings.ContainsAny(p, " \t\n") {
			return nil, fmt.Errorf("%s: package %q: want ./DIR or an import path", src.Module, p)
		}
	}
	if err := checkGoLine(src, tc); err != nil {
		return nil, err
	}
	r.logf("resolving %s %s with %s", src.Module, strings.Join(packages, " "), tc.GoVersion)
	optional := make(map[string]bool)
	for _, l := range libraries {
		optional[importPath(src, l)] = true
	}
	pkgs, err := r.goList(ctx, tc, src, all, optional, r.goEnv(tc, r.modCache(), r.Proxy.String()))
	if err != nil {
		return nil, err
	}
	res := &Resolution{Main: src.Module}
	if res.Packages, err = requested(src, pkgs, packages); err != nil {
		return nil, err
	}
	goSum, err := readGoSum(filepath.Join(src.Dir, "go.sum"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Module, err)
	}
	seen := make(map[string]bool)
	for _, p := range pkgs {
		m := p.Module
		if p.Standard || m == nil || m.Main {
			continue
		}
		if m.Replace != nil {
			return nil, fmt.Errorf("%s: %s is replaced by %s@%s", src.Module, m.Path, m.Replace.Path, m.Replace.Version)
		}
		key := m.Path + "@" + m.Version
		if seen[key] {
			continue
		}
		seen[key] = true
		sum, ok := goSum.Zips[module.Version{Path: m.Path, Version: m.Version}]
		if !ok {
			return nil, fmt.Errorf("%s: its go.sum has no sum for %s, which its packages need: the go command refuses to build it offline", src.Module, key)
		}
		res.Deps = append(res.Deps, Module{Path: m.Path, Version: m.Version, Sum: sum})
	}
	slices.SortFunc(res.Deps, compareModules)
	if res.ModFiles, err = r.checkOffline(ctx, tc, src, all, optional, res.Deps); err != nil {
		return nil, err
	}
	return res, nil
}

func compareModules(a, b Module) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	return strings.Compare(a.Version, b.Version)
}

// checkGoLine refuses a main module whose go line needs a newer Go than
// the toolchain's (with GOTOOLCHAIN=local the go command would refuse it).
func checkGoLine(src *Source, tc *Toolchain) error {
	if src.GoMod.Go == nil {
		return nil
	}
	need := "go" + src.GoMod.Go.Version
	if version.Compare(need, tc.GoVersion) > 0 {
		return &NeedsNewerGo{Module: src.Module.String(), Go: need, Toolchain: tc.GoVersion}
	}
	return nil
}

// goEnv is the go command's whole environment for resolving: the
// toolchain, the module cache and the proxies given, builds as hephc's
// builders run them (static, linux/amd64, -mod=readonly), nothing of the
// user's go configuration (GOFLAGS, go env -w) but the network settings.
func (r *Resolver) goEnv(tc *Toolchain, modcache, proxy string) []string {
	env := slices.DeleteFunc(slices.Clone(r.Env.Pass), func(kv string) bool {
		// Resolving fetches from the proxies alone, as builds do.
		return strings.HasPrefix(kv, "GOPRIVATE=") || strings.HasPrefix(kv, "GONOPROXY=") || strings.HasPrefix(kv, "GOINSECURE=")
	})
	return append(env,
		"GOROOT="+tc.GOROOT,
		"PATH="+filepath.Join(tc.GOROOT, "bin")+":/usr/bin:/bin",
		"GOTOOLCHAIN=local",
		"GOFLAGS=-mod=readonly -modcacherw",
		"GOENV=off",
		"GOWORK=off",
		"GOMODCACHE="+modcache,
		"GOCACHE="+r.dir("gocache"),
		"GOPATH="+r.dir("gopath"),
		"GOPROXY="+proxy,
		"GOSUMDB=off", // every sum comes from the main module's go.sum
		"CGO_ENABLED=0",
		"GOOS=linux",
		"GOARCH=amd64",
		"GOAMD64=v1",
	)
}

// goList runs go list -e -deps -json (and flags) over packages in src and returns
// what it printed; a failure of the go command itself is an error, and so
// is a package's, but for an optional package that the build constraints
// leave out for linux/amd64 (as u-root's busybox skips such commands).
func (r *Resolver) goList(ctx context.Context, tc *Toolchain, src *Source, packages []string, optional map[string]bool, env []string, flags ...string) ([]listedPackage, error) {
	args := append(append([]string{"list", "-e", "-deps", "-json=" + listFields}, flags...), packages...)
	cmd := exec.CommandContext(ctx, filepath.Join(tc.GOROOT, "bin", "go"), args...)
	cmd.Dir = src.Dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var pkgs []listedPackage
	dec := json.NewDecoder(&stdout)
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list in %s: %w", src.Module, err)
		}
		pkgs = append(pkgs, p)
	}
	if runErr != nil {
		return nil, goError(src, tc, stderr.String(), runErr)
	}
	for _, p := range pkgs {
		if p.Error != nil && optional[p.ImportPath] && !p.DepOnly && strings.Contains(p.Error.Err, "build constraints exclude all Go files") {
			continue
		}
		if p.Error != nil {
			return nil, packageError(src, tc, p)
		}
		if p.Module != nil && p.Module.Error != nil {
			return nil, goError(src, tc, p.Module.Error.Err, nil)
		}
	}
	return pkgs, nil
}

var (
	reNeedsGo  = regexp.MustCompile(`(?m)(\S+@\S+|go\.mod) requires go >= (\S+) \(running go`)
	reMismatch = regexp.MustCompile(`(?m)verifying (\S+@\S+?)(/go\.mod)?: checksum mismatch`)
)

// goError turns what the go command printed into one line.
func goError(src *Source, tc *Toolchain, msg string, runErr error) error {
	if m := reNeedsGo.FindStringSubmatch(msg); m != nil {
		mod := m[1]
		if mod == "go.mod" {
			mod = src.Module.String()
		}
		return &NeedsNewerGo{Module: mod, Go: "go" + m[2], Toolchain: tc.GoVersion}
	}
	if m := reMismatch.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("SECURITY ERROR: %s%s: the module proxy served content that does not match the sum in %s's go.sum; nothing was written", m[1], m[2], src.Module)
	}
	line := ""
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "go: "))
		if l != "" && !strings.HasPrefix(l, "downloading ") {
			line = l
			break
		}
	}
	if line == "" && runErr != nil {
		line = runErr.Error()
	}
	return fmt.Errorf("%s: go list: %s", src.Module, line)
}

// packageError turns the error of one package into one line, saying so
// when the package needs cgo.
func packageError(src *Source, tc *Toolchain, p listedPackage) error {
	msg := p.Error.Err
	if strings.Contains(msg, "build constraints exclude all Go files") {
		for _, f := range p.IgnoredGoFiles {
			if importsC(filepath.Join(p.Dir, f)) {
				return &NeedsCgoError{ImportPath: p.ImportPath, File: f}
			}
		}
	}
	if strings.Contains(msg, "missing go.sum entry") {
		return fmt.Errorf("%s: its go.sum lacks a sum it needs (%s)", src.Module, strings.TrimSuffix(firstLine(msg), "; to add:"))
	}
	return goError(src, tc, msg, nil)
}

// importsC reports whether a Go file imports "C".
func importsC(file string) bool {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
	if err != nil {
		return false
	}
	for _, imp := range f.Imports {
		if imp.Path.Value == `"C"` {
			return true
		}
	}
	return false
}

// requested returns the packages asked for, checking that each exists and
// is a main package (a pattern with "..." may also match others).
func requested(src *Source, pkgs []listedPackage, packages []string) ([]Package, error) {
	byPath := make(map[string]listedPackage)
	for _, p := range pkgs {
		if !p.DepOnly {
			byPath[p.ImportPath] = p
		}
	}
	var out []Package
	for _, arg := range packages {
		if strings.Contains(arg, "...") {
			continue
		}
		ip := importPath(src, arg)
		p, ok := byPath[ip]
		if !ok {
			return nil, fmt.Errorf("%s: no package %s in it", src.Module, ip)
		}
		if p.Name != "main" {
			return nil, &NotMainError{ImportPath: ip, Name: p.Name}
		}
		out = append(out, Package{ImportPath: ip, Name: p.Name, Doc: p.Doc})
	}
	return out, nil
}

// importPath is the import path of a package argument: ./DIR or . are
// relative to the module root.
func importPath(src *Source, arg string) string {
	if arg == "." || strings.HasPrefix(arg, "./") {
		return path.Join(src.Path, arg)
	}
	return arg
}

// readGoSum reads a main module's go.sum; a module without one has none
// of its sums.
func readGoSum(file string) (*modfetch.GoSum, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return &modfetch.GoSum{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gs, err := modfetch.ParseGoSum(f)
	if err != nil {
		return nil, fmt.Errorf("go.sum: %w", err)
	}
	return gs, nil
}
