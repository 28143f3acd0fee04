package builder

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/realize"
)

func init() {
	register(builtins.UrootBusybox, urootBusybox)
	register(builtins.Uroot, uroot)
}

// What a builtins.UrootBusybox or builtins.Uroot output holds: the archive
// and what went into it.
const (
	InitramfsFile         = "initrd"
	InitramfsManifestFile = "manifest.json"
)

// Files the initramfs builder writes into the image for heph's init and
// self-test (system/hephinit reads them).
const (
	imageServicesFile = "etc/heph/services.json"
	imageProgramsFile = "etc/heph/programs.json"
	imageConsoleFile  = "etc/heph/console.json"
	// uinit is what u-root's init runs once the system is up: heph's
	// service starter, from input init.
	uinitProgram = "bin/hephinit"
)

// gobusybox runs go build with -a (rebuild every package) and
// -gcflags=all=-l (no inlining, for a smaller binary), so that nothing of
// the go command's cache is used. The busybox takes u-root's flags that
// undo both, so that its build uses the std cache of input gostd (built
// with goBuildFlags only, as every Go build is) like any other Go build:
// -go-enable-inlining drops -gcflags=all=-l, and -a=false, which go build
// reads after gobusybox's -a, turns -a off. The binary stays reproducible
// (-trimpath, -buildid=, no symbols): the go command reuses a cache entry
// only when its action ID, a hash of everything that goes into it, is the
// one it would compute.
const (
	urootInlining  = "-go-enable-inlining"
	urootNoRebuild = "-go-extra-args=-a=false"
)

// urootBusybox compiles u-root's commands attrs.commands (templates of
// u-root's .mkuimage.yaml such as "core" or "minimal", or package paths),
// with the Go build tags attrs.tags, into one busybox binary with the u-root command of input tool, in the
// u-root module of input src, with the toolchain of input go, offline:
// the module cache is laid out from inputs deps.N and modfiles as for
// go-build. $out/initrd is the archive (/bbin, /init, /bin/sh and
// u-root's base files), $out/manifest.json what went into it.
func urootBusybox(args, env []string, stdout, stderr io.Writer) error {
	start := time.Now()
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	in, err := needInputs(info, "uroot-busybox", "src", "the u-root module", "go", "the toolchain", "tool", "the u-root command, built from src")
	if err != nil {
		return err
	}
	src, gotool, tool := in[0], in[1], in[2]
	commands, err := stringList(info.Derivation.Attrs["commands"])
	if err != nil || len(commands) == 0 {
		return fmt.Errorf("uroot-busybox: attrs.commands: want a non-empty list of strings")
	}
	tags, err := stringList(info.Derivation.Attrs["tags"])
	if err != nil {
		return fmt.Errorf("uroot-busybox: attrs.tags: %w", err)
	}
	uArgs := []string{"-go-mod=readonly", urootInlining, urootNoRebuild}
	for _, tag := range tags {
		uArgs = append(uArgs, "-go-build-tags="+tag)
	}
	const modcache = "/build/gomodcache"
	if err := layoutModuleCache(info, modcache, stdout); err != nil {
		return fmt.Errorf("uroot-busybox: %w", err)
	}
	if err := seedGoCache(info, stdout); err != nil { // gostdcache.go
		return fmt.Errorf("uroot-busybox: %w", err)
	}
	urootEnv := append(goEnviron(gotool.Path, modcache, env), "GOAMD64=v1")
	if err := runURoot(tool, src.Path, info.Out, urootEnv, append(uArgs, commands...), stdout, stderr); err != nil {
		return err
	}
	if err := reportStdCacheUse(info, stdout); err != nil {
		return fmt.Errorf("uroot-busybox: %w", err)
	}
	toolPins, err := readSources(tool.Path)
	if err != nil {
		return fmt.Errorf("uroot-busybox: input tool: %w", err)
	}
	man := InitramfsManifest{
		Name:     info.Derivation.Name,
		Version:  info.Derivation.Version,
		Commands: commands,
		BuiltBy:  &Package{Name: tool.Name, Version: tool.Version, Pins: toolPins},
		Pins:     mergePins(pinsOf(info.Inputs), toolPins),
	}
	return writeManifest(info.Out, man, start, stdout)
}

// uroot assembles a bootable initramfs with the u-root command of input
// tool, compiling nothing: the archive of input busybox (a
// builtins.UrootBusybox output), the programs (bin/*) of input init and of
// the inputs bin.NAME in /bin, attrs.files, and /etc/heph/services.json,
// /etc/heph/programs.json and /etc/heph/console.json (attrs.consoleShell)
// for heph's init, which u-root's init runs as /bin/uinit. $out/initrd is
// the archive (u-root writes its records sorted, with zero mtimes, owners
// and inode numbers), $out/manifest.json what went into it.
func uroot(args, env []string, stdout, stderr io.Writer) error {
	start := time.Now()
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	in, err := needInputs(info, "uroot", "busybox", "u-root's commands (a #Busybox)", "tool", "the u-root command")
	if err != nil {
		return err
	}
	busybox, tool := in[0], in[1]
	var base InitramfsManifest
	if err := readJSON(filepath.Join(busybox.Path, InitramfsManifestFile), &base); err != nil {
		return fmt.Errorf("uroot: input busybox is not a %s output: %w", builtins.UrootBusybox, err)
	}
	files, err := imageFiles(info.Derivation.Attrs["files"])
	if err != nil {
		return fmt.Errorf("uroot: attrs.files: %w", err)
	}
	services, err := imageServices(info.Derivation.Attrs["services"])
	if err != nil {
		return fmt.Errorf("uroot: attrs.services: %w", err)
	}
	shell, err := consoleShell(info.Derivation.Attrs)
	if err != nil {
		return fmt.Errorf("uroot: %w", err)
	}
	st, err := stageImage(info, files, services, imageConsole{Shell: shell}, "/build/image")
	if err != nil {
		return fmt.Errorf("uroot: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(services)) {
		cmd := services[name].Command
		if _, ok := st.img.files[strings.TrimPrefix(cmd, "/")]; !ok && !strings.HasPrefix(cmd, "/bbin/") {
			fmt.Fprintf(stdout, "warning: service %s: its command %s is not among the image's programs and files\n", name, cmd)
		}
	}

	// The busybox's archive is the base; its /init and /bin/sh stay.
	uArgs := []string{"-nocmd", "-base", filepath.Join(busybox.Path, InitramfsFile), "-initcmd=", "-defaultsh="}
	if st.uinit != "" {
		uArgs = append(uArgs, "-uinitcmd="+st.uinit)
	}
	for _, dest := range st.img.sorted() {
		uArgs = append(uArgs, "-files", st.img.files[dest].host+":"+dest)
	}
	// No Go is needed: keep the u-root command from looking for one.
	uEnv := []string{"PATH=/nonexistent", "HOME=/homeless-shelter", "GOOS=linux", "GOARCH=amd64"}
	if err := runURoot(tool, "/build", info.Out, uEnv, uArgs, stdout, stderr); err != nil {
		return err
	}

	bpkg, err := describePackage(busybox)
	if err != nil {
		return fmt.Errorf("uroot: input busybox: %w", err)
	}
	bpkg.Files = []string{"/bbin/bb"}
	bpkg.Pins = mergePins(bpkg.Pins, base.Pins)
	toolPins, err := readSources(tool.Path)
	if err != nil {
		return fmt.Errorf("uroot: input tool: %w", err)
	}
	man := InitramfsManifest{
		Name:         info.Derivation.Name,
		Version:      info.Derivation.Version,
		Commands:     base.Commands,
		Packages:     append([]Package{bpkg}, st.packages...),
		Services:     services,
		Files:        slices.Sorted(maps.Keys(files)),
		ConsoleShell: shell,
		BuiltBy:      &Package{Name: tool.Name, Version: tool.Version, Pins: toolPins},
		Pins:         toolPins,
	}
	return writeManifest(info.Out, man, start, stdout)
}

// needInputs returns the inputs named in pairs (name, what it is), or an
// error naming the first one missing.
func needInputs(info *realize.BuildInfo, builder string, pairs ...string) ([]realize.InputInfo, error) {
	var in []realize.InputInfo
	for i := 0; i < len(pairs); i += 2 {
		x, ok := info.Inputs[pairs[i]]
		if !ok {
			return nil, fmt.Errorf("%s: no input %s (%s)", builder, pairs[i], pairs[i+1])
		}
		in = append(in, x)
	}
	return in, nil
}

// runURoot runs the u-root command of tool in dir with the environment
// env and the arguments args, writing the archive to out/initrd; its
// temporary files go below scratch.
func runURoot(tool realize.InputInfo, dir, out string, env, args []string, stdout, stderr io.Writer) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, d := range []string{scratch + "/tmp", scratch + "/uroot", scratch + "/cache"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	args = append([]string{"-o", filepath.Join(out, InitramfsFile), "-tmp-dir", scratch + "/uroot", "-skip-ldd"}, args...)
	fmt.Fprintf(stdout, "u-root %s\n", strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(tool.Path, "bin", "u-root"), args...)
	cmd.Dir = dir
	cmd.Env = append(env, "TMPDIR="+scratch+"/tmp", "XDG_CACHE_HOME="+scratch+"/cache")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("u-root: %w", err)
	}
	return nil
}

// writeManifest writes man as out/manifest.json and says what was built.
func writeManifest(out string, man InitramfsManifest, start time.Time, log io.Writer) error {
	b, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, InitramfsManifestFile), append(b, '\n'), 0o644); err != nil {
		return err
	}
	fi, err := os.Stat(filepath.Join(out, InitramfsFile))
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "%s: %d bytes, %d packages, %d services, in %.1fs\n", man.Name, fi.Size(), len(man.Packages), len(man.Services), time.Since(start).Seconds())
	return nil
}

func readJSON(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// describePackage says what a store path is, for a manifest: name,
// version, path, content hash and size, and the pins of its sources when
// it was built by go-build.
func describePackage(in realize.InputInfo) (Package, error) {
	tree, err := fstree.HashTree(in.Path, fstree.HashOptions{})
	if err != nil {
		return Package{}, err
	}
	pins, err := readSources(in.Path)
	if err != nil {
		return Package{}, err
	}
	if in.OutputHash != "" {
		pins = mergePins(pins, pinsOf(map[string]realize.InputInfo{"": in}))
	}
	return Package{Name: in.Name, Version: in.Version, Path: in.Path, ContentHash: tree.Hash.String(), Size: tree.Size, Pins: pins}, nil
}

// readSources reads the pins a go-build output lists, if it does.
func readSources(dir string) ([]Pin, error) {
	b, err := os.ReadFile(filepath.Join(dir, SourcesFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pins []Pin
	if err := json.Unmarshal(b, &pins); err != nil {
		return nil, fmt.Errorf("%s: %w", SourcesFile, err)
	}
	return pins, nil
}

// stringList decodes a JSON list of strings; nil is the empty list.
func stringList(v any) ([]string, error) {
	if v == nil {
		return []string{}, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want a list of strings")
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("want a list of strings, found %v", e)
		}
		out = append(out, s)
	}
	return out, nil
}

// inputsWithPrefix returns the names of the build's inputs that start with
// prefix, sorted (deps.10 after deps.9).
func inputsWithPrefix(info *realize.BuildInfo, prefix string) []string {
	var names []string
	for name := range info.Inputs {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := names[i][len(prefix):], names[j][len(prefix):]
		na, ea := strconv.Atoi(a)
		nb, eb := strconv.Atoi(b)
		if ea == nil && eb == nil {
			return na < nb
		}
		return a < b
	})
	return names
}
