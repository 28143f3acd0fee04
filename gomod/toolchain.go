package gomod

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/version"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/modfetch"
)

// ToolchainModule is the module the go command downloads toolchains as.
const ToolchainModule = modfetch.ToolchainModule

// ToolchainPlatform is the platform of the toolchains hephc builds with.
const ToolchainPlatform = "linux-amd64"

// Toolchain is a pinned Go toolchain, extracted and ready to run.
type Toolchain struct {
	Module    Module // its pin
	GoVersion string // e.g. go1.26.8
	GOROOT    string
}

// ToolchainGoVersion returns the Go version of a version of the toolchain
// module (v0.0.1-go1.26.8.linux-amd64 → go1.26.8) and its platform.
func ToolchainGoVersion(v string) (goVersion, platform string, err error) {
	rest, ok := strings.CutPrefix(v, "v0.0.1-")
	i := strings.LastIndex(rest, ".")
	if !ok || i < 0 {
		return "", "", fmt.Errorf("%s@%s: not a toolchain version (want v0.0.1-GOVERSION.GOOS-GOARCH)", ToolchainModule, v)
	}
	goVersion, platform = rest[:i], rest[i+1:]
	if goos, goarch, ok := strings.Cut(platform, "-"); !ok || goos == "" || goarch == "" {
		return "", "", fmt.Errorf("%s@%s: not a toolchain version (want v0.0.1-GOVERSION.GOOS-GOARCH)", ToolchainModule, v)
	}
	if !version.IsValid(goVersion) {
		return "", "", fmt.Errorf("%s@%s: %q is not a Go version", ToolchainModule, v, goVersion)
	}
	return goVersion, platform, nil
}

// ToolchainVersion is the toolchain module's version for a Go version on
// hephc's platform: go1.27.0 → v0.0.1-go1.27.0.linux-amd64.
func ToolchainVersion(goVersion string) string {
	return "v0.0.1-" + goVersion + "." + ToolchainPlatform
}

// Toolchain returns the pinned toolchain m ready to run: from known (a
// directory that already holds it, e.g. its path in hephc's store) when
// that looks right, else from the cache, else fetched from the module
// proxy, checked against m.Sum before anything is extracted, and
// extracted into the cache.
func (r *Resolver) Toolchain(ctx context.Context, m Module, known string) (*Toolchain, error) {
	goVersion, platform, err := ToolchainGoVersion(m.Version)
	if err != nil {
		return nil, err
	}
	if platform != ToolchainPlatform {
		return nil, fmt.Errorf("%s@%s: builds use %s toolchains", m.Path, m.Version, ToolchainPlatform)
	}
	if host := runtime.GOOS + "-" + runtime.GOARCH; host != platform {
		return nil, fmt.Errorf("resolving runs the pinned toolchain, which is for %s; this machine is %s", platform, host)
	}
	tc := &Toolchain{Module: m, GoVersion: goVersion}
	if known != "" && isGOROOT(known, goVersion) {
		tc.GOROOT = known
		return tc, nil
	}
	sumID := sha256.Sum256([]byte(m.Sum))
	dir := filepath.Join(r.dir("toolchain"), goVersion+"."+platform+"-"+hex.EncodeToString(sumID[:8]))
	if b, err := os.ReadFile(filepath.Join(dir, verifiedMarker)); err == nil && strings.TrimSpace(string(b)) == m.Sum && isGOROOT(dir, goVersion) {
		tc.GOROOT = dir
		return tc, nil
	}
	r.logf("fetching the toolchain %s@%s", m.Path, m.Version)
	tmp, err := os.MkdirTemp(r.dir("toolchain"), ".fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	zip := filepath.Join(tmp, "toolchain.zip")
	if err := r.Proxy.Zip(ctx, m.Path, m.Version, zip); err != nil {
		return nil, fmt.Errorf("fetching the toolchain: %w", err)
	}
	root := filepath.Join(tmp, "root")
	if err := modfetch.Unzip(root, module.Version{Path: m.Path, Version: m.Version}, zip, m.Sum); err != nil {
		return nil, err
	}
	if !isGOROOT(root, goVersion) {
		return nil, fmt.Errorf("%s@%s: the module holds no %s toolchain (bin/go and VERSION)", m.Path, m.Version, goVersion)
	}
	if err := os.WriteFile(filepath.Join(root, verifiedMarker), []byte(m.Sum+"\n"), 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dir) // a stale, unverified extraction
	if err := os.Rename(root, dir); err != nil {
		// Another hephc may have put it there meanwhile.
		if b, rerr := os.ReadFile(filepath.Join(dir, verifiedMarker)); rerr != nil || strings.TrimSpace(string(b)) != m.Sum {
			return nil, fmt.Errorf("caching the toolchain: %w", err)
		}
	}
	tc.GOROOT = dir
	return tc, nil
}

// verifiedMarker, in a cached toolchain, holds the sum it was checked
// against; it is written last.
const verifiedMarker = ".hephc-verified"

// isGOROOT reports whether dir holds the toolchain of goVersion: bin/go
// and a VERSION file whose first line names it.
func isGOROOT(dir, goVersion string) bool {
	if fi, err := os.Stat(filepath.Join(dir, "bin", "go")); err != nil || fi.Mode()&0o111 == 0 {
		return false
	}
	f, err := os.Open(filepath.Join(dir, "VERSION"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	return sc.Scan() && strings.TrimSpace(sc.Text()) == goVersion
}

// NeedsNewerGo says that a module's go line asks for a newer Go than the
// pinned toolchain's.
type NeedsNewerGo struct {
	Module    string // path@version
	Go        string // what it needs, e.g. go1.27.0
	Toolchain string // the pinned toolchain's, e.g. go1.26.8
}

func (e *NeedsNewerGo) Error() string {
	return fmt.Sprintf("%s needs %s or newer (its go.mod says go %s), but the pinned toolchain is %s: pin a newer toolchain first, e.g. hephc update %s@%s",
		e.Module, e.Go, strings.TrimPrefix(e.Go, "go"), e.Toolchain, ToolchainModule, ToolchainVersion(firstRelease(e.Go)))
}

// firstRelease is the first release of a language version: go1.27 →
// go1.27.0 (as toolchains are named since Go 1.21).
func firstRelease(goVersion string) string {
	if version.Lang(goVersion) == goVersion && strings.Count(goVersion, ".") == 1 {
		if version.Compare(goVersion, "go1.21") >= 0 {
			return goVersion + ".0"
		}
	}
	return goVersion
}
