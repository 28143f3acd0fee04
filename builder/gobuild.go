package builder

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/store"
	"hephc.dev/hephc/store/sandbox"
)

func init() { sandbox.RegisterBuiltin("go-build", goBuild) }

// goBuild builds the main packages attrs.packages of the module in input
// src with the toolchain in input go, offline: the pinned modules of
// inputs deps.N are laid out as a module cache (each module's directory a
// link to its store path, its go.mod and its h1: sum beside it), and the
// go command may not download anything (GOPROXY=off). The programs land in
// $out/bin.
func goBuild(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	src, ok := info.Inputs["src"]
	if !ok {
		return fmt.Errorf("go-build: no input src (the main module)")
	}
	gotool, ok := info.Inputs["go"]
	if !ok {
		return fmt.Errorf("go-build: no input go (the toolchain)")
	}
	modcache := "/build/gomodcache"
	var deps []string
	for name := range info.Inputs {
		if strings.HasPrefix(name, "deps.") {
			deps = append(deps, name)
		}
	}
	sort.Strings(deps)
	for _, name := range deps {
		if err := linkModule(modcache, info.Inputs[name]); err != nil {
			return fmt.Errorf("go-build: input %s: %w", name, err)
		}
	}
	packages := []string{"."}
	if ps, ok := info.Derivation.Attrs["packages"].([]any); ok && len(ps) > 0 {
		packages = packages[:0]
		for _, p := range ps {
			s, _ := p.(string)
			packages = append(packages, s)
		}
	}
	ldflags, _ := info.Derivation.Attrs["ldflags"].(string)
	goroot := gotool.Path
	goEnv := []string{
		"GOROOT=" + goroot,
		"PATH=" + goroot + "/bin",
		"GOTOOLCHAIN=local",
		"GOPROXY=off",
		"GOSUMDB=off",
		"GOFLAGS=-mod=readonly",
		"GOMODCACHE=" + modcache,
		"GOCACHE=/build/gocache",
		"GOPATH=/build/gopath",
		"GOENV=off",
		"CGO_ENABLED=0",
		"GOOS=linux",
		"GOARCH=amd64",
		"HOME=/homeless-shelter",
		"TMPDIR=/tmp",
		"SOURCE_DATE_EPOCH=" + getenv(env, "SOURCE_DATE_EPOCH"),
	}
	if err := os.MkdirAll(filepath.Join(info.Out, "bin"), 0o755); err != nil {
		return err
	}
	cmdArgs := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=" + ldflags, "-o", filepath.Join(info.Out, "bin") + "/"}
	cmdArgs = append(cmdArgs, packages...)
	fmt.Fprintf(stdout, "go %s\n", strings.Join(cmdArgs, " "))
	cmd := exec.Command(filepath.Join(goroot, "bin", "go"), cmdArgs...)
	cmd.Dir = src.Path
	cmd.Env = goEnv
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	return nil
}

// linkModule makes the module of one input visible in the module cache at
// modcache: the extracted directory is a link to the store path, and the
// download cache holds its go.mod and the h1: sum its pin verified.
func linkModule(modcache string, in store.InputInfo) error {
	mod, _ := in.Attrs["module"].(string)
	ver, _ := in.Attrs["version"].(string)
	if mod == "" || ver == "" || !strings.HasPrefix(in.OutputHash, "h1:") {
		return fmt.Errorf("%s is not a pinned Go module (#GoModule)", in.Path)
	}
	emod, err := module.EscapePath(mod)
	if err != nil {
		return err
	}
	ever, err := module.EscapeVersion(ver)
	if err != nil {
		return err
	}
	dir := filepath.Join(modcache, emod+"@"+ever)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(in.Path, dir); err != nil {
		return err
	}
	dl := filepath.Join(modcache, "cache", "download", emod, "@v")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(in.Path, "go.mod"))
	if err != nil {
		// The proxy makes up a go.mod for a module without one.
		gomod = []byte(fmt.Sprintf("module %s\n", modulePathQuoted(mod)))
	}
	files := map[string][]byte{
		ever + ".mod":     gomod,
		ever + ".ziphash": []byte(in.OutputHash + "\n"),
		ever + ".info":    []byte(fmt.Sprintf("{\"Version\":%q}\n", ver)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dl, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func modulePathQuoted(p string) string {
	if strings.ContainsAny(p, " \t\"") {
		return fmt.Sprintf("%q", p)
	}
	return p
}
