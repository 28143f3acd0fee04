package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/localsrc"
	"hephc.dev/hephc/modfetch"
)

// hephcPinsFile is the configuration file that builds hephc from this
// repository (hephcSrc, hephcModFiles, hephcModules), relative to the
// repository.
const hephcPinsFile = "system.cue"

var updateHephcPins = flag.Bool("update-hephc-pins", false, "TestHephcSourcePinIsCurrent: rewrite the generated hephc pins instead of failing")

// The generated block of hephcPinsFile.
const (
	pinsBegin = "// BEGIN GENERATED hephc pins\n"
	pinsEnd   = "// END GENERATED hephc pins\n"
)

// TestHephcSourcePinIsCurrent: the configuration builds hephc from the
// repository's Go sources, a #LocalFile pinned by its tree hash, with the
// modules go list -deps ./cmd/hephc names. Every Go change changes the
// source's pin and a go.mod change the modules: a stale pin breaks every
// realize of the configuration (the fetched tree hashes to something
// else). This recomputes the generated block offline (the tree through
// the #LocalFile's own filter, the go.mod files of the module graph from
// the local module cache, checked against go.sum) and fails printing it,
// or with -update-hephc-pins writes it.
func TestHephcSourcePinIsCurrent(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(repo, hephcPinsFile)
	conf, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want, err := hephcPins(t, repo, conf)
	if err != nil {
		t.Fatal(err)
	}
	out, err := withPins(conf, want)
	if err != nil {
		t.Fatalf("%s: %v", hephcPinsFile, err)
	}
	sumFile := filepath.Join(repo, "heph.sum")
	sum, err := os.ReadFile(sumFile)
	if err != nil {
		t.Fatal(err)
	}
	locked := withLocks(sum, want)
	if bytes.Equal(out, conf) && bytes.Equal(locked, sum) {
		return
	}
	if *updateHephcPins {
		if err := os.WriteFile(file, out, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sumFile, locked, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s and heph.sum: hephc's pins rewritten", hephcPinsFile)
		return
	}
	t.Errorf("%s pins hephc's sources or modules by stale pins (or heph.sum lacks its modules): run\n\tgo test ./cmd/hephc -run TestHephcSourcePinIsCurrent -update-hephc-pins\nor set its generated block to:\n%s", hephcPinsFile, want)
}

// withPins is conf with pins as its generated block.
func withPins(conf []byte, pins string) ([]byte, error) {
	i, j := bytes.Index(conf, []byte(pinsBegin)), bytes.Index(conf, []byte(pinsEnd))
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %q … %q block", pinsBegin, pinsEnd)
	}
	return append(append(slices.Clip(conf[:i+len(pinsBegin)]), pins...), conf[j:]...), nil
}

// withLocks is the heph.sum sum with the line of every module pins
// writes out (hephc update's lock: evaluation checks each pin against it).
func withLocks(sum []byte, pins string) []byte {
	var head, lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(sum)), "\n") {
		if strings.HasPrefix(l, "#") {
			head = append(head, l)
		} else {
			lines = append(lines, l)
		}
	}
	for _, m := range regexp.MustCompile(`\{path: "([^"]+)", version: "([^"]+)", sum: "([^"]+)"\}`).FindAllStringSubmatch(pins, -1) {
		lines = append(lines, m[1]+" "+m[2]+" "+m[3])
	}
	// As hephc update writes it (pins.lockOf): module lines sorted, then
	// program lines sorted.
	var mods, progs []string
	for _, l := range lines {
		if strings.Contains(l, " program ") {
			progs = append(progs, l)
		} else {
			mods = append(mods, l)
		}
	}
	slices.Sort(mods)
	slices.Sort(progs)
	lines = append(slices.Compact(mods), slices.Compact(progs)...)
	return []byte(strings.Join(append(head, lines...), "\n") + "\n")
}

// hephcPins computes the generated block: the source's tree hash, the
// go.mod graph's, and the modules, reusing system.cue's modules entries
// where path and version match.
func hephcPins(t *testing.T, repo string, conf []byte) (string, error) {
	filter, err := hephcSrcFilter(conf)
	if err != nil {
		return "", err
	}
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if _, err := localsrc.Copy(repo, ".", filter, src, 0); err != nil {
		return "", err
	}
	srcTree, err := fstree.HashTree(src, fstree.HashOptions{})
	if err != nil {
		return "", err
	}
	goSum, err := os.ReadFile(filepath.Join(src, "go.sum"))
	if err != nil {
		return "", err
	}
	sums, err := modfetch.ParseGoSum(bytes.NewReader(goSum))
	if err != nil {
		return "", err
	}
	modTree, err := modFilesTree(filepath.Join(tmp, "modfiles"), sums)
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}}{{end}}{{end}}", "./cmd/hephc")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=readonly")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -deps ./cmd/hephc: %w", err)
	}
	system, err := os.ReadFile(filepath.Join(repo, "system.cue"))
	if err != nil {
		return "", err
	}
	// system.cue's own pins: its modules: {…} block.
	if m := regexp.MustCompile(`(?s)\nmodules: \{\n(.*?)\n\}\n`).FindSubmatch(system); m != nil {
		system = m[1]
	} else {
		return "", fmt.Errorf("system.cue has no modules: {…} block")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hephcPins: {\n\tsrc:      %q\n\tmodfiles: %q\n}\nhephcModules: {\n", srcTree.Hash, modTree.Hash)
	seen := map[string]bool{}
	keys := map[string]bool{}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(lines)
	for _, line := range lines {
		if line == "" || seen[line] {
			continue
		}
		seen[line] = true
		path, version, _ := strings.Cut(line, " ")
		sum := sums.Zips[module.Version{Path: path, Version: version}]
		if sum == "" {
			return "", fmt.Errorf("go.sum has no sum for %s %s", path, version)
		}
		key := moduleKey(path, keys)
		if m := regexp.MustCompile(`(?m)^\t(\w+): \{path: "` + regexp.QuoteMeta(path) + `", version: "` + regexp.QuoteMeta(version) + `"`).FindSubmatch(system); m != nil {
			fmt.Fprintf(&b, "\t%s: modules.%s\n", key, m[1])
			continue
		}
		fmt.Fprintf(&b, "\t%s: {path: %q, version: %q, sum: %q}\n", key, path, version, sum)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// moduleKey is a CUE identifier for a module path, not one of taken.
func moduleKey(path string, taken map[string]bool) string {
	elems := strings.Split(path, "/")
	if len(elems) > 1 && regexp.MustCompile(`^v[0-9]+$`).MatchString(elems[len(elems)-1]) {
		elems = elems[:len(elems)-1]
	}
	clean := func(s string) string {
		return strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(s), "_"), "_")
	}
	key := clean(elems[len(elems)-1])
	if strings.HasPrefix(path, "golang.org/x/") {
		key = "x_" + key
	}
	generic := map[string]bool{"": true, "go": true, "api": true, "cli": true}
	for i := len(elems) - 2; (taken[key] || generic[key] || key[0] >= '0' && key[0] <= '9') && i >= 0; i-- {
		key = clean(elems[i]) + "_" + key
	}
	taken[key] = true
	return key
}

// hephcSrcFilter reads hephcSrc's include and exclude lists.
func hephcSrcFilter(conf []byte) (localsrc.Filter, error) {
	var f localsrc.Filter
	block := regexp.MustCompile(`(?s)\nhephcSrc: heph.#LocalFile & \{\n(.*?)\n\}\n`).FindSubmatch(conf)
	if block == nil {
		return f, fmt.Errorf("no hephcSrc: heph.#LocalFile & {…} block")
	}
	for name, dst := range map[string]*[]string{"include": &f.Include, "exclude": &f.Exclude} {
		m := regexp.MustCompile(`\n\t\t` + name + `: \[([^\]\n]*)\]`).FindSubmatch(block[1])
		if m == nil {
			return f, fmt.Errorf("hephcSrc has no one-line %s list", name)
		}
		for _, q := range strings.Split(string(m[1]), ",") {
			s, err := strconv.Unquote(strings.TrimSpace(q))
			if err != nil {
				return f, fmt.Errorf("hephcSrc's %s: %s: %w", name, q, err)
			}
			*dst = append(*dst, s)
		}
	}
	return f, f.Check()
}

// modFilesTree lays out, at dir, the go.mod files go.sum lists as the
// fetch-gomod-graph builder does, from the local module cache (each
// checked against its sum), and hashes the tree. The go command fetches
// those the cache lacks first: building the tests fetches only the
// modules whose packages they import, not every go.mod of the graph.
func modFilesTree(dir string, sums *modfetch.GoSum) (fstree.TreeInfo, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return fstree.TreeInfo{}, fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	cache := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	var missing []string
	for _, s := range sums.GoMods {
		if _, err := os.Stat(filepath.Join(cache, filepath.FromSlash(s.File()))); err != nil {
			missing = append(missing, s.String())
		}
	}
	if len(missing) > 0 {
		cmd := exec.Command("go", append([]string{"mod", "download"}, missing...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fstree.TreeInfo{}, fmt.Errorf("fetching the go.mod files the module cache lacks (go mod download %s): %v\n%s", strings.Join(missing, " "), err, out)
		}
	}
	for _, s := range sums.GoMods {
		b, err := os.ReadFile(filepath.Join(cache, filepath.FromSlash(s.File())))
		if err != nil {
			return fstree.TreeInfo{}, fmt.Errorf("the go.mod of %s is not in the module cache (go mod download -json %s): %w", s, s, err)
		}
		if h, err := modfetch.HashGoMod(b); err != nil || h != s.Sum {
			return fstree.TreeInfo{}, fmt.Errorf("%s in the module cache does not match go.sum (%s, %v)", s.File(), h, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(modfetch.ModFilesDir), filepath.FromSlash(s.File()))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fstree.TreeInfo{}, err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fstree.TreeInfo{}, err
		}
	}
	return fstree.HashTree(dir, fstree.HashOptions{})
}
