package builder

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/realize"
)

func init() { register(builtins.GoStdCache, goStdCache) }

// goBuildFlags are the go command's flags that every Go build shares and
// that change how packages compile; a std cache is built with them, so its
// entries match a build's (buildvcs only concerns main modules).
var goBuildFlags = []string{"-trimpath"}

// goStdCacheAttrs are the attrs a builtins.GoStdCache derivation states
// (defs #GoStdCache): the platform and flags of goEnviron and
// goBuildFlags, so that changing them changes its hash, and vet, false
// for the compiled half.
func goStdCacheAttrs() map[string]any {
	flags := make([]any, len(goBuildFlags))
	for i, f := range goBuildFlags {
		flags[i] = f
	}
	return map[string]any{"goos": "linux", "goarch": "amd64", "cgo": false, "flags": flags, "vet": false}
}

// goStdCache compiles the standard library of the toolchain in input go
// into a go command cache at $out, as every Go build of hephc compiles it
// (goEnviron, goBuildFlags), so that the builds that take it as input gostd
// (seedGoCache) do not compile it again. The go command keys each entry
// by an action ID that hashes the toolchain, the platform, the flags and
// the package's files, and uses an entry only when the IDs match: a build
// with other tags or flags compiles what differs. With attrs.vet (a
// #GoStdVet), it is the other half, which only go test needs: starting
// from input gostd (the compiled half), what go test's vet learns of each
// package and the test link (vetStdCache), and $out holds only the
// entries that gostd does not. The cache is made deterministic: the
// last-trim time is dropped and every entry's time-added field is zero.
func goStdCache(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	gotool, ok := info.Inputs["go"]
	if !ok {
		return fmt.Errorf("go-std-cache: no input go (the toolchain)")
	}
	vet, err := checkStdCacheAttrs(info.Derivation.Attrs)
	if err != nil {
		return err
	}
	goEnv := append(goEnviron(gotool.Path, scratch+"/gomodcache", env), "GOCACHE="+info.Out, "TMPDIR=/tmp") // the last GOCACHE wins
	if vet {
		err = vetStdFrom(info, gotool.Path, goEnv, stdout, stderr)
	} else {
		err = buildStdCache(gotool.Path, goEnv, "std", stdout, stderr)
	}
	if err != nil {
		return fmt.Errorf("go-std-cache: %w", err)
	}
	n, err := normalizeGoCache(info.Out)
	if err != nil {
		return fmt.Errorf("go-std-cache: %w", err)
	}
	fmt.Fprintf(stdout, "go-std-cache: %d entries\n", n)
	return nil
}

// vetStdFrom fills $out with vet's half of the std cache (vetStdCache),
// starting from input gostd, the compiled half, whose entries it then
// drops.
func vetStdFrom(info *realize.BuildInfo, goroot string, env []string, stdout, stderr io.Writer) error {
	in, ok := info.Inputs["gostd"]
	if !ok {
		return fmt.Errorf("attrs.vet: no input gostd (the compiled standard library)")
	}
	if in.Builder != builtins.GoStdCache || in.Attrs["vet"] != false {
		return fmt.Errorf("input gostd: %s is not the compiled standard library (#GoStdCache)", in.Path)
	}
	if _, err := seedGoCacheFrom(in.Path, info.Out); err != nil {
		return fmt.Errorf("input gostd: %w", err)
	}
	if err := vetStdCache(goroot, env, "std", stdout, stderr); err != nil {
		return err
	}
	return dropSeeded(in.Path, info.Out)
}

// stdGoCmd is the go command at goroot with args in dir and env, logged
// to stdout.
func stdGoCmd(goroot string, env []string, dir string, stdout, stderr io.Writer, args ...string) *exec.Cmd {
	fmt.Fprintf(stdout, "go %s\n", strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(goroot, "bin", "go"), args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, stdout, stderr
	return cmd
}

// buildStdCache compiles the packages of pattern (std) with the go
// command at goroot in env (whose GOCACHE is the cache to fill), as a
// build does.
func buildStdCache(goroot string, env []string, pattern string, stdout, stderr io.Writer) error {
	args := append(append([]string{"build"}, goBuildFlags...), pattern)
	if err := stdGoCmd(goroot, env, scratch, stdout, stderr, args...).Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pattern, err)
	}
	return nil
}

// vetStdCache runs go vet's analysis of the packages of pattern (std) as
// go test does (vet keeps facts of every package a tested package
// imports, with flags of its own for std), in env's GOCACHE, which
// already holds them compiled (buildStdCache): go test of a package that
// imports every one of them that can be imported (no internal or vendored
// package), running no test (-count=1: no result is cached, for it holds
// a time).
func vetStdCache(goroot string, env []string, pattern string, stdout, stderr io.Writer) error {
	list := stdGoCmd(goroot, env, scratch, stdout, stderr, "list", "-f", "{{if .GoFiles}}{{.ImportPath}}{{end}}", pattern)
	list.Stdout = nil
	out, err := list.Output()
	if err != nil {
		return fmt.Errorf("go list %s: %w", pattern, err)
	}
	src := "package stdvet\n\nimport (\n"
	for _, p := range strings.Fields(string(out)) {
		if !slices.Contains(strings.Split(p, "/"), "internal") && !strings.HasPrefix(p, "vendor/") {
			src += fmt.Sprintf("\t_ %q\n", p)
		}
	}
	src += ")\n"
	dir := filepath.Join(scratch, "stdvet")
	files := map[string]string{
		"go.mod":         "module hephc.invalid/stdvet\n\ngo 1.22\n",
		"stdvet.go":      src,
		"stdvet_test.go": "package stdvet\n\nimport \"testing\"\n\nfunc TestNothing(t *testing.T) {}\n",
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	args := append(append([]string{"test"}, goBuildFlags...), "-buildvcs=false", "-count=1", "-run=^$", ".")
	if err := stdGoCmd(goroot, env, dir, stdout, stderr, args...).Run(); err != nil {
		return fmt.Errorf("go test of the packages of %s: %w", pattern, err)
	}
	return nil
}

// dropSeeded removes from the go command cache dst every file that the
// cache src, which seeded it (seedGoCacheFrom), holds too: what is left
// is what the go command added.
func dropSeeded(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if err := os.Remove(filepath.Join(dst, rel)); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	})
}

// checkStdCacheAttrs refuses attrs other than goStdCacheAttrs, with
// vet: true for vet's half (#GoStdVet): the builders build for one
// platform with one set of flags. It says whether attrs ask for vet's
// half.
func checkStdCacheAttrs(attrs map[string]any) (vet bool, err error) {
	want := goStdCacheAttrs()
	if attrs["vet"] == true {
		want["vet"] = true
	}
	for k := range attrs {
		if _, ok := want[k]; !ok {
			return false, fmt.Errorf("go-std-cache: unknown attrs.%s", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if fmt.Sprint(attrs[k]) != fmt.Sprint(want[k]) {
			return false, fmt.Errorf("go-std-cache: attrs.%s is %v; hephc's Go builds use %v", k, attrs[k], want[k])
		}
	}
	return want["vet"] == true, nil
}

// goCacheEntry names the go command's cache files: NN/HASH-a (an action's
// entry) and NN/HASH-d (an output).
var goCacheEntry = regexp.MustCompile(`^[0-9a-f]{2}/[0-9a-f]{64}-[ad]$`)

// normalizeGoCache makes the go command cache at dir the same for the
// same compiled files: it removes trim.txt (the time of the last trim)
// and sets the time-added field of each action entry (v1 ID OUT SIZE
// TIME) to 0, which the go command reads as a valid time it only uses to
// expire cached test results. Any other file fails: the layout is not the
// one this was written for. It returns the number of action entries.
func normalizeGoCache(dir string) (int, error) {
	if err := os.Remove(filepath.Join(dir, "trim.txt")); err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == "README":
			return nil
		case !goCacheEntry.MatchString(rel) || !d.Type().IsRegular():
			return fmt.Errorf("unexpected file %s in the go command's cache", rel)
		case strings.HasSuffix(rel, "-d"):
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		nb, err := zeroEntryTime(b)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		n++
		return os.WriteFile(p, nb, 0o644)
	})
	return n, err
}

// zeroEntryTime returns the action entry b with its time field 0.
func zeroEntryTime(b []byte) ([]byte, error) {
	const timeWidth = 20
	f := bytes.Fields(b)
	if len(f) != 5 || string(f[0]) != "v1" || b[len(b)-1] != '\n' || len(b) < timeWidth+1 {
		return nil, fmt.Errorf("not a go command cache entry (v1 ID OUT SIZE TIME)")
	}
	if _, err := strconv.ParseInt(string(f[4]), 10, 64); err != nil {
		return nil, fmt.Errorf("cache entry time: %w", err)
	}
	out := slices.Clone(b)
	copy(out[len(out)-1-timeWidth:], fmt.Sprintf("%*d", timeWidth, 0))
	return out, nil
}

// goCache is the go command's cache in a build (goEnviron).
const goCache = scratch + "/gocache"

// stdCacheInputs are the inputs a Go build's cache starts from, each a
// builtins.GoStdCache output: gostd, the compiled standard library, which
// every #GoDerivation takes, and gostdvet, vet's half (#GoStdVet), which
// only a #GoTest takes. Whether each is the half it should be is said by
// its attrs.vet.
var stdCacheInputs = []struct {
	name, what string
	vet        bool
}{
	{"gostd", "#GoStdCache", false},
	{"gostdvet", "#GoStdVet", true},
}

// stdCaches returns the build's inputs of stdCacheInputs, checked.
func stdCaches(info *realize.BuildInfo) ([]realize.InputInfo, []string, error) {
	var ins []realize.InputInfo
	var names []string
	for _, c := range stdCacheInputs {
		in, ok := info.Inputs[c.name]
		if !ok {
			continue
		}
		if in.Builder != builtins.GoStdCache || (in.Attrs["vet"] == true) != c.vet {
			return nil, nil, fmt.Errorf("input %s: %s is not a %s output (%s)", c.name, in.Path, builtins.GoStdCache, c.what)
		}
		ins, names = append(ins, in), append(names, c.name)
	}
	return ins, names, nil
}

// seedGoCache starts the build's go command cache from inputs gostd and
// gostdvet, if there are (seedGoCacheFrom).
func seedGoCache(info *realize.BuildInfo, log io.Writer) error {
	ins, names, err := stdCaches(info)
	if err != nil {
		return err
	}
	for i, in := range ins {
		n, err := seedGoCacheFrom(in.Path, goCache)
		if err != nil {
			return fmt.Errorf("input %s: %w", names[i], err)
		}
		fmt.Fprintf(log, "go cache: %d entries from %s\n", n, in.Path)
	}
	return nil
}

// seededEntryTime is the time of the entries seedGoCacheFrom copies, so
// that the go command marks those it uses (reportStdCacheUse).
var seededEntryTime = time.Unix(0, 0)

// seedGoCacheFrom starts the go command cache dst from the read-only cache
// src (a GoStdCache output): the action entries are copied, dated 1970
// (the go command touches those it uses), the outputs are links to src's, which the go command only
// reads. trim.txt says dst was just trimmed, so the go command never
// removes the links. It returns the number of action entries.
func seedGoCacheFrom(src, dst string) (int, error) {
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case rel == "README":
			return nil
		case !goCacheEntry.MatchString(rel) || !d.Type().IsRegular():
			return fmt.Errorf("unexpected file %s in a go command cache", rel)
		case strings.HasSuffix(rel, "-d"):
			return os.Symlink(p, target)
		}
		n++
		if err := copyFile(p, target); err != nil {
			return err
		}
		return os.Chtimes(target, seededEntryTime, seededEntryTime)
	})
	if err != nil {
		return 0, err
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	return n, os.WriteFile(filepath.Join(dst, "trim.txt"), []byte(now), 0o644)
}

// copyFile copies the regular file src to dst.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// reportStdCacheUse says in log how many of the action entries that
// seedGoCache copied from inputs gostd and gostdvet the go command used:
// it sets the time of an entry it uses to now when it is older than an
// hour, and seedGoCacheFrom dates the copies 1970. Nothing for an input
// the build does not have.
func reportStdCacheUse(info *realize.BuildInfo, log io.Writer) error {
	ins, names, err := stdCaches(info)
	if err != nil {
		return err
	}
	for i, in := range ins {
		n, used := 0, 0
		err := filepath.WalkDir(in.Path, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, "-a") {
				return err
			}
			rel, _ := filepath.Rel(in.Path, p)
			fi, err := os.Stat(filepath.Join(goCache, rel))
			if err != nil {
				return err
			}
			n++
			if fi.ModTime().After(seededEntryTime) {
				used++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("input %s: %w", names[i], err)
		}
		fmt.Fprintf(log, "go cache: used %d of the %d entries of input %s\n", used, n, names[i])
	}
	return nil
}
