package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/dirhash"

	"hephc.dev/hephc/sandbox"
)

// BuildInfoPath is where a build finds /.heph/build.json: the derivation,
// its output path and, for each input, its store path, name, version,
// builder, attrs and pin. Built-in builders read it; any builder may.
const BuildInfoPath = "/.heph/build.json"

// BuildInfo is the content of BuildInfoPath.
type BuildInfo struct {
	Hash       DrvHash              `json:"hash"`
	Out        string               `json:"out"`
	Derivation *Derivation          `json:"derivation"`
	Inputs     map[string]InputInfo `json:"inputs"`
}

// InputInfo describes one input of a build.
type InputInfo struct {
	Path       string         `json:"path"`
	Name       string         `json:"name"`
	Version    string         `json:"version"`
	Builder    string         `json:"builder"`
	Attrs      map[string]any `json:"attrs"`
	OutputHash string         `json:"outputHash,omitempty"`
}

// FetchFileSource is where a builtin:fetch-file build finds its file.
const FetchFileSource = "/.heph/src"

// fixedEnv is the environment every build starts from; the derivation's
// env is added, and out always names the output.
var fixedEnv = map[string]string{
	"HOME":              "/homeless-shelter",
	"PATH":              "/path-not-set",
	"TMPDIR":            "/tmp",
	"TMP":               "/tmp",
	"TEMP":              "/tmp",
	"TEMPDIR":           "/tmp",
	"SOURCE_DATE_EPOCH": "1",
	"TERM":              "dumb",
	"LC_ALL":            "C.UTF-8",
	"HEPH_BUILD_TOP":    "/build",
}

// fetchEnv are the user's variables a fixed-output build (a fetch) may
// see: where to fetch from, through which proxy, trusting which CAs.
var fetchEnv = []string{"GOPROXY", "GONOPROXY", "GOPRIVATE", "GOINSECURE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"}

// Expand replaces every @{input} in s by the input's store path.
func (g *Graph) Expand(d *Derivation, s string) string {
	if !strings.Contains(s, "@{") {
		return s
	}
	return placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if h, ok := d.Inputs[name]; ok {
			return g.PathOf(h).String()
		}
		return m
	})
}

// build runs h's builder in a sandbox, then checks, hashes and registers
// its output. Nothing is registered unless all of that succeeds.
func (s *Store) build(ctx context.Context, g *Graph, h DrvHash, opts RealizeOptions) (*PathInfo, error) {
	return s.buildTo(ctx, g, h, opts, "")
}

// buildTo is build; with scratch not "", the output goes to scratch (in
// Dir/tmp) instead of the store, is checked and hashed there but not
// registered, and the log goes beside the first build's: a rebuild for
// Repair.
func (s *Store) buildTo(ctx context.Context, g *Graph, h DrvHash, opts RealizeOptions, scratch string) (*PathInfo, error) {
	d := g.Derivations[h]
	p := g.PathOf(h)
	fail := func(logPath string, err error) error {
		return &BuildError{Drv: h, Path: p, Origin: g.Origins[h], LogPath: logPath, LogTail: tail(logPath, 25), Err: err}
	}

	// The build sees its inputs' closures, read-only, and nothing else of
	// the store.
	var inputs []Path
	info := BuildInfo{Hash: h, Out: p.String(), Derivation: d, Inputs: map[string]InputInfo{}}
	for _, name := range d.InputNames() {
		ih := d.Inputs[name]
		ip := g.PathOf(ih)
		inputs = append(inputs, ip)
		id := g.Derivations[ih]
		info.Inputs[name] = InputInfo{Path: ip.String(), Name: id.Name, Version: id.Version, Builder: id.Builder, Attrs: id.Attrs, OutputHash: id.OutputHash}
	}
	closure, err := s.Closure(ctx, inputs...)
	if err != nil {
		return nil, fail("", err)
	}

	tmp, err := os.MkdirTemp(filepath.Join(s.Dir, "tmp"), "build-"+h.String()[:16]+"-")
	if err != nil {
		return nil, fail("", err)
	}
	defer RemoveTree(tmp)
	for _, sub := range []string{"store", "build", "heph"} {
		if err := os.Mkdir(filepath.Join(tmp, sub), 0o755); err != nil {
			return nil, fail("", err)
		}
	}
	infoJSON, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, fail("", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "heph", "build.json"), infoJSON, 0o444); err != nil {
		return nil, fail("", err)
	}

	logPath := s.LogPath(h)
	if scratch != "" {
		logPath = strings.TrimSuffix(logPath, ".log") + ".repair.log"
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fail("", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fail("", err)
	}
	defer logFile.Close()
	started := s.Now().Unix()
	record := func(status string) { s.recordBuild(ctx, h, started, status, logPath) }

	spec := &sandbox.Spec{
		Env:     buildEnv(g, d, p, opts),
		Dir:     "/build",
		Network: d.IsFixedOutput(),
		Timeout: opts.Timeout,
		Stdout:  logFile,
		Stderr:  logFile,
		Mounts: []sandbox.Mount{
			{Source: filepath.Join(tmp, "store"), Target: Dir, Writable: true},
			{Source: filepath.Join(tmp, "build"), Target: "/build", Writable: true},
			{Source: filepath.Join(tmp, "heph"), Target: "/.heph"},
		},
	}
	if spec.Timeout == 0 {
		spec.Timeout = DefaultBuildTimeout
	}
	for _, c := range closure {
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: s.Physical(c), Target: c.String()})
	}
	if d.IsFixedOutput() {
		spec.Mounts = append(spec.Mounts, fileProxyMounts(opts.Getenv)...)
	}
	if d.Builder == "builtin:fetch-file" {
		file, _ := d.Attrs["file"].(string)
		if !filepath.IsLocal(file) || opts.SourceDir == "" {
			return nil, fail("", fmt.Errorf("fetch-file: %q is not a file below the configuration's directory", file))
		}
		// The mount point exists already inside the read-only /.heph: a
		// directory for a directory, else a file (a FIFO or other
		// special file is refused by the builder).
		src := filepath.Join(opts.SourceDir, file)
		mp := filepath.Join(tmp, "heph", "src")
		var err error
		if fi, serr := os.Stat(src); serr == nil && fi.IsDir() {
			err = os.Mkdir(mp, 0o555)
		} else {
			err = os.WriteFile(mp, nil, 0o444)
		}
		if err != nil {
			return nil, fail("", err)
		}
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: filepath.Join(opts.SourceDir, file), Target: FetchFileSource})
	}
	if name, ok := strings.CutPrefix(d.Builder, "builtin:"); ok {
		spec.Builtin = name
	} else {
		spec.Program = g.Expand(d, d.Builder)
	}
	for _, a := range d.Args {
		spec.Args = append(spec.Args, g.Expand(d, a))
	}

	runErr := sandbox.Run(ctx, spec)
	if runErr != nil {
		record("failed")
		return nil, fail(logPath, runErr)
	}
	out := filepath.Join(tmp, "store", p.Base())
	if _, err := os.Lstat(out); err != nil {
		record("failed")
		return nil, fail(logPath, fmt.Errorf("the builder succeeded but did not create its output $out (%s)", p))
	}
	// Into place first, then read-only: as an ordinary user, a read-only
	// directory cannot be moved to another parent. Until it is registered
	// the path is not valid, and whoever builds it next removes it.
	phys := s.Physical(p)
	if scratch != "" {
		phys = scratch
	}
	if err := os.Rename(out, phys); err != nil {
		record("failed")
		return nil, fail(logPath, fmt.Errorf("moving the output into the store: %w", err))
	}
	discard := func(err error) (*PathInfo, error) {
		RemoveTree(phys)
		record("failed")
		return nil, fail(logPath, err)
	}
	if err := Canonicalize(phys); err != nil {
		return discard(err)
	}
	candidates := make([]DrvHash, 0, len(closure)+1)
	byHash := make(map[DrvHash]Path, len(closure)+1)
	for _, c := range append(closure, p) {
		candidates = append(candidates, c.Hash)
		byHash[c.Hash] = c
	}
	tree, err := HashTree(phys, HashOptions{Refs: NewRefScanner(candidates)})
	if err != nil {
		return discard(err)
	}
	if d.IsFixedOutput() {
		if err := verifyFixedOutput(d, phys, tree.Hash); err != nil {
			return discard(err)
		}
	}
	pi := &PathInfo{Path: p, ContentHash: tree.Hash, Size: tree.Size, Files: tree.Files, Deriver: h, Registered: s.Now().Unix(), CA: d.OutputHash}
	for _, r := range tree.Refs {
		pi.References = append(pi.References, byHash[r])
	}
	sortPaths(pi.References)
	if scratch != "" {
		record("rebuilt")
		return pi, nil
	}
	if err := s.register(ctx, pi, &buildRecord{drv: h, started: started, log: logPath}); err != nil {
		return discard(err)
	}
	return pi, nil
}

func buildEnv(g *Graph, d *Derivation, p Path, opts RealizeOptions) []string {
	env := make(map[string]string)
	if d.IsFixedOutput() && opts.Getenv != nil {
		for _, k := range fetchEnv {
			if v := opts.Getenv(k); v != "" {
				env[k] = v
			}
		}
	}
	for k, v := range d.Env {
		env[k] = g.Expand(d, v)
	}
	for k, v := range fixedEnv {
		env[k] = v
	}
	env["out"] = p.String()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + env[k]
	}
	return out
}

// fileProxyMounts makes file:// module proxies in GOPROXY visible to a
// fetch, read-only, at the same path.
func fileProxyMounts(getenv func(string) string) []sandbox.Mount {
	if getenv == nil {
		return nil
	}
	var ms []sandbox.Mount
	for _, e := range strings.FieldsFunc(getenv("GOPROXY"), func(r rune) bool { return r == ',' || r == '|' }) {
		if dir, ok := strings.CutPrefix(e, "file://"); ok && filepath.IsAbs(dir) {
			if _, err := os.Stat(dir); err == nil {
				ms = append(ms, sandbox.Mount{Source: dir, Target: dir})
			}
		}
	}
	return ms
}

// verifyFixedOutput checks a fetch's output against its pin: an h1: sum is
// the go command's dirhash of the module tree (as module@version/...), a
// blake3: pin the canonical tree hash.
func verifyFixedOutput(d *Derivation, out string, got OutputHash) error {
	switch {
	case strings.HasPrefix(d.OutputHash, "h1:"):
		mod, _ := d.Attrs["module"].(string)
		ver, _ := d.Attrs["version"].(string)
		if mod == "" || ver == "" {
			return fmt.Errorf("an h1: pin needs attrs.module and attrs.version (a #GoModule)")
		}
		sum, err := dirhash.HashDir(out, mod+"@"+ver, dirhash.Hash1)
		if err != nil {
			return fmt.Errorf("hashing the fetched module: %w", err)
		}
		if sum != d.OutputHash {
			return &HashMismatchError{Want: d.OutputHash, Got: sum}
		}
	case strings.HasPrefix(d.OutputHash, "blake3:"):
		if got.String() != d.OutputHash {
			return &HashMismatchError{Want: d.OutputHash, Got: got.String()}
		}
	default:
		return fmt.Errorf("unknown kind of pin %q", d.OutputHash)
	}
	return nil
}

// HashMismatchError is a fetched output whose hash is not its pin.
type HashMismatchError struct{ Want, Got string }

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("hash mismatch: the pin says %s, the fetched content hashes to %s; nothing was stored", e.Want, e.Got)
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) []string {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 1<<20 {
		f.Seek(fi.Size()-1<<20, io.SeekStart)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// buildRecord is a finished build, for the builds table.
type buildRecord struct {
	drv     DrvHash
	started int64
	log     string
}

// recordBuild records a build that ended without registering anything
// (even when ctx was canceled: the build did end).
func (s *Store) recordBuild(ctx context.Context, h DrvHash, started int64, status, logPath string) {
	s.db.ExecContext(context.WithoutCancel(ctx), `INSERT INTO builds(drv, started, finished, status, log) VALUES (?, ?, ?, ?, ?)`,
		h.String(), started, s.Now().Unix(), status, logPath)
}
