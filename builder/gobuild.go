package builder

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/modfetch"
	"hephc.dev/hephc/realize"
)

func init() { register(builtins.GoBuild, goBuild) }

// goBuild builds the main packages attrs.packages of the module in input
// src with the toolchain in input go, offline: the pinned modules of
// inputs deps.N are laid out as a module cache (each module's directory a
// link to its store path, its go.mod and its h1: sum beside it), with the
// go.mod files of input modfiles (a builtins.FetchGoModGraph output), if
// any, for the rest of the module graph; the go command may not download
// anything (GOPROXY=off). The programs land in $out/bin, the pins of the
// sources in $out/SourcesFile.
func goBuild(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	job, err := setupGo(info, "go-build", env, stdout)
	if err != nil {
		return err
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
	if err := os.MkdirAll(filepath.Join(info.Out, "bin"), 0o755); err != nil {
		return err
	}
	cmdArgs := append(append([]string{"build"}, goBuildFlags...), "-buildvcs=false", "-ldflags="+ldflags, "-o", filepath.Join(info.Out, "bin")+"/")
	cmd := job.command(stdout, append(cmdArgs, packages...))
	goErr := &goStderr{}
	cmd.Stdout, cmd.Stderr = stdout, io.MultiWriter(stderr, goErr)
	if err := cmd.Run(); err != nil {
		return goBuildFailed(info, goErr, err) // gomissing.go
	}
	if err := reportStdCacheUse(info, stdout); err != nil { // gostdcache.go
		return fmt.Errorf("go-build: %w", err)
	}
	return writeSources(info)
}

// goJob is what a Go build and a go test share: the main module (input
// src) and the go command's environment, offline, with the module cache
// laid out and the go command's cache seeded.
type goJob struct {
	src, gotool realize.InputInfo
	env         []string
}

// setupGo prepares a Go build of info for the builder called kind: input
// src is the main module, input go the toolchain, the module cache is laid
// out from inputs deps.N and modfiles (layoutModuleCache) and the go
// command's cache starts from input gostd, if any (seedGoCache).
func setupGo(info *realize.BuildInfo, kind string, env []string, log io.Writer) (*goJob, error) {
	src, ok := info.Inputs["src"]
	if !ok {
		return nil, fmt.Errorf("%s: no input src (the main module)", kind)
	}
	gotool, ok := info.Inputs["go"]
	if !ok {
		return nil, fmt.Errorf("%s: no input go (the toolchain)", kind)
	}
	const modcache = "/build/gomodcache"
	if err := layoutModuleCache(info, modcache, log); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if err := seedGoCache(info, log); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	// goBuildFlags in GOFLAGS too: a go command that a test runs (age's
	// cmd/age test builds its plugins with go build) then compiles as the
	// std cache was compiled and takes its entries, instead of compiling
	// the standard library again without them.
	goFlags := "GOFLAGS=" + strings.Join(append([]string{"-mod=readonly"}, goBuildFlags...), " ")
	goEnv := append(goEnviron(gotool.Path, modcache, env), goFlags, "TMPDIR=/tmp")
	return &goJob{src: src, gotool: gotool, env: goEnv}, nil
}

// command is the go command with args in the main module, logged to log.
func (j *goJob) command(log io.Writer, args []string) *exec.Cmd {
	fmt.Fprintf(log, "go %s\n", strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(j.gotool.Path, "bin", "go"), args...)
	cmd.Dir = j.src.Path
	cmd.Env = j.env
	return cmd
}

// SourcesFile is where, below a builtins.GoBuild output, the pins of its
// sources are listed (JSON, a list of Pin): the main module, the
// toolchain, the dependencies and the go.mod files. It names no store
// path, so it adds no reference; a system's manifest collects it.
const SourcesFile = "share/heph/sources.json"

// writeSources writes the build's pinned inputs to $out/SourcesFile.
func writeSources(info *realize.BuildInfo) error {
	pins := pinsOf(info.Inputs)
	b, err := json.MarshalIndent(pins, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(info.Out, SourcesFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, append(b, '\n'), 0o644)
}

// scratch is where builds keep what they throw away: the go command's
// cache and work files, u-root's generated sources. The sandbox's /tmp is
// a tmpfs of its own, so they stay in memory.
const scratch = "/tmp"

// goEnviron is the go command's environment in a build: the toolchain at
// goroot, offline, the module cache at modcache, CGO_ENABLED=0, for
// linux/amd64.
func goEnviron(goroot, modcache string, env []string) []string {
	return []string{
		"GOROOT=" + goroot,
		"PATH=" + goroot + "/bin",
		"GOTOOLCHAIN=local",
		"GOPROXY=off",
		"GOSUMDB=off",
		"GOWORK=off",
		"GOMODCACHE=" + modcache,
		"GOCACHE=" + scratch + "/gocache",
		"GOPATH=" + scratch + "/gopath",
		"GOENV=off",
		"CGO_ENABLED=0",
		"GOOS=linux",
		"GOARCH=amd64",
		"HOME=/homeless-shelter",
		"SOURCE_DATE_EPOCH=" + getenv(env, "SOURCE_DATE_EPOCH"),
	}
}

// layoutModuleCache lays out the module cache at modcache from the build's
// inputs deps.N (pinned modules) and modfiles (go.mod files of the module
// graph), if any.
func layoutModuleCache(info *realize.BuildInfo, modcache string, log io.Writer) error {
	for _, name := range inputsWithPrefix(info, "deps.") {
		if err := linkModule(modcache, info.Inputs[name]); err != nil {
			return fmt.Errorf("input %s: %w", name, err)
		}
	}
	if mf, ok := info.Inputs["modfiles"]; ok {
		n, err := modfetch.LinkModFiles(modcache, mf.Path)
		if err != nil {
			return fmt.Errorf("input modfiles: %w", err)
		}
		fmt.Fprintf(log, "module graph: %d more go.mod files from %s\n", n, mf.Path)
	}
	return nil
}

// linkModule makes the module of one input visible in the module cache at
// modcache (modfetch.LinkModule): the extracted directory is a link to the
// store path, and the download cache holds its go.mod and the h1: sum its
// pin verified.
func linkModule(modcache string, in realize.InputInfo) error {
	mod, _ := in.Attrs["module"].(string)
	ver, _ := in.Attrs["version"].(string)
	if in.Builder != builtins.FetchGoMod || mod == "" || ver == "" || !strings.HasPrefix(in.OutputHash, "h1:") {
		return fmt.Errorf("%s is not a pinned Go module (#GoModule)", in.Path)
	}
	return modfetch.LinkModule(modcache, module.Version{Path: mod, Version: ver}, in.OutputHash, in.Path)
}
