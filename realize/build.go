package realize

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/dirhash"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/localsrc"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/store"
)

// BuildInfoPath is where a build finds /.heph/build.json: the derivation,
// its output path and, for each input, its store path, name, version,
// builder, attrs and pin. Built-in builders read it; any builder may.
const BuildInfoPath = "/.heph/build.json"

// BuildInfo is the content of BuildInfoPath.
type BuildInfo struct {
	Hash       store.DrvHash        `json:"hash"`
	Out        string               `json:"out"`
	Derivation *store.Derivation    `json:"derivation"`
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

// FetchFileSource is where a fetch-file build (builtins.FetchFile) finds
// its file.
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

// build runs h's builder in a sandbox and installs its output
// (store.Install): moved into place, made canonical, hashed, its
// references found, checked against its pin if it is a fetch, and
// registered. Nothing is registered unless all of that succeeds. lock is
// h's output lock, held by the caller, who found the output not valid
// once it held it. A repair (repair is what the store
// recorded of h's valid output) puts the rebuild in place of the content
// if it hashes the same, else it is a *NotReproducibleError; its log goes
// beside the first build's. registering, if not nil, is called once only
// the output's registration is left (store.InstallRequest.Registering).
func build(ctx context.Context, st *store.Store, g *store.Graph, h store.DrvHash, opts Options, lock *store.Lock, repair *store.PathInfo, registering func()) (*store.PathInfo, error) {
	d := g.Derivations[h]
	p := g.PathOf(h)
	logPath := st.LogPath(h)
	if repair != nil {
		logPath = strings.TrimSuffix(logPath, ".log") + ".repair.log"
	}
	b, err := runPooledBuilder(ctx, st, g, h, opts, logPath)
	if err != nil {
		return nil, err
	}
	var removed chan struct{} // closed once b's directory is emptied, if that started
	defer func() {
		if removed == nil {
			b.release()
		} else {
			<-removed
		}
	}()
	rec := b.rec
	rebuilt := false
	req := store.InstallRequest{
		Path: p, Source: b.out, Lock: lock, References: b.closure, Deriver: h, CA: d.OutputHash, Build: &rec, Repair: repair != nil,
		// buildOne found p not valid once it held lock.
		NotValid: repair == nil,
		// Once the output is hashed, the next build may start, and
		// what is left of this one's directory is removed while its
		// registration waits for a sync.
		Registering: func() {
			if registering != nil {
				registering()
			}
			removed = make(chan struct{})
			go func() {
				defer close(removed)
				b.release()
			}()
		},
		Check: func(phys string, info *store.PathInfo) error {
			if d.IsFixedOutput() {
				if err := verifyFixedOutput(d, phys, info.ContentHash); err != nil {
					return err
				}
			}
			if repair != nil {
				st.RecordBuild(ctx, rec, "rebuilt")
				rebuilt = true
				if info.ContentHash != repair.ContentHash {
					return &NotReproducibleError{Path: p, Want: repair.ContentHash, Got: info.ContentHash}
				}
			}
			return nil
		},
	}
	pi, err := st.Install(ctx, req)
	switch {
	case err == nil:
		return pi, nil
	case rebuilt:
		return nil, err
	}
	st.RecordBuild(ctx, rec, "failed")
	return nil, b.fail(err)
}

// builderOutput is what a builder left, not yet installed: its output
// (out) in the temporary directory tmp, which the caller removes (or
// gives back to the pool: release); the inputs' closure, which the
// output may refer to; the build's record and log.
type builderOutput struct {
	tmp, out string
	release  func()
	closure  []store.Path
	rec      store.BuildRecord
	fail     func(error) error // a *BuildError of this build, with its log
}

// buildLayout is where a build's sandbox mounts come from: its
// output's store directory, /build and /.heph side by side, and the
// directory for their overlay's work directory ("" for beside them).
type buildLayout struct {
	store, build, heph, work string
}

func layoutIn(dir string) buildLayout {
	return buildLayout{store: filepath.Join(dir, "store"), build: filepath.Join(dir, "build"), heph: filepath.Join(dir, "heph")}
}

// runPooledBuilder is runBuilder in a build directory of st's pool
// (store.TakeBuildDir), laid out as layoutIn(DIR/u) with the overlay's
// work directory in DIR/w: kept from build to build, so that a build
// makes and removes no directory of its own on the store's disk. The
// output's release empties the directories and gives DIR back, or
// removes it if anything is left.
func runPooledBuilder(ctx context.Context, st *store.Store, g *store.Graph, h store.DrvHash, opts Options, logPath string) (*builderOutput, error) {
	bd, err := st.TakeBuildDir()
	if err != nil {
		return nil, buildError(g, h, "", err)
	}
	lay := layoutIn(filepath.Join(bd.Path, "u"))
	lay.work = filepath.Join(bd.Path, "w")
	if bd.New {
		for _, d := range []string{filepath.Join(bd.Path, "u"), lay.store, lay.build, lay.heph, lay.work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				bd.Discard()
				return nil, buildError(g, h, "", err)
			}
		}
	}
	release := func() {
		for _, d := range []string{lay.store, lay.build, lay.heph} {
			// build.json is written over by the next build: one inode
			// fewer made and freed a build.
			if err := emptyDir(d, "build.json"); err != nil {
				bd.Discard()
				return
			}
		}
		bd.Put()
	}
	b, err := runBuilderIn(ctx, st, g, h, opts, logPath, lay)
	if err != nil {
		release()
		return nil, err
	}
	b.tmp, b.release = bd.Path, release
	return b, nil
}

// emptyDir removes everything in dir but the file named keep.
func emptyDir(dir, keep string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == keep {
			if fi, err := os.Lstat(filepath.Join(dir, n)); err == nil && fi.Mode().IsRegular() {
				continue
			}
		}
		if err := fstree.RemoveTree(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// writeBuildInfo writes build.json at path, over the one an earlier
// build in the same directory left, if any (truncated: nothing of it
// stays), else as a new file.
func writeBuildInfo(path string, data []byte) error {
	err := os.WriteFile(path, data, 0o444)
	if errors.Is(err, fs.ErrPermission) { // read-only to a caller that is not root
		os.Remove(path)
		err = os.WriteFile(path, data, 0o444)
	}
	return err
}

// buildError is a *BuildError of h's build, with its log if logPath.
func buildError(g *store.Graph, h store.DrvHash, logPath string, err error) error {
	return &BuildError{Drv: h, Path: g.PathOf(h), Origin: g.Origins[h], LogPath: logPath, LogTail: tail(logPath, 25), Err: err}
}

// runBuilder prepares h's build in a new temporary directory of the store
// (under the GC lock the caller holds shared), runs its builder in a
// sandbox with its log at logPath, and returns the output it made, in
// place in that directory. It is the first half of build; a repair
// installs the output over the old content, a check (CheckPath) only
// hashes it. On an error nothing is left but the log, and the error is a
// *BuildError.
func runBuilder(ctx context.Context, st *store.Store, g *store.Graph, h store.DrvHash, opts Options, logPath string) (*builderOutput, error) {
	tmp, err := st.TempDir("build-" + h.String()[:16] + "-")
	if err != nil {
		return nil, buildError(g, h, "", err)
	}
	lay := layoutIn(tmp)
	for _, d := range []string{lay.store, lay.build, lay.heph} {
		if err := os.Mkdir(d, 0o755); err != nil {
			fstree.RemoveTree(tmp)
			return nil, buildError(g, h, "", err)
		}
	}
	b, err := runBuilderIn(ctx, st, g, h, opts, logPath, lay)
	if err != nil {
		fstree.RemoveTree(tmp)
		return nil, err
	}
	b.tmp, b.release = tmp, func() { fstree.RemoveTree(tmp) }
	return b, nil
}

// runBuilderIn is runBuilder's work, in the directories lay, which the
// caller made, empty, and removes or empties.
func runBuilderIn(ctx context.Context, st *store.Store, g *store.Graph, h store.DrvHash, opts Options, logPath string, lay buildLayout) (*builderOutput, error) {
	d := g.Derivations[h]
	p := g.PathOf(h)
	fail := func(logPath string, err error) error { return buildError(g, h, logPath, err) }

	// The build sees its inputs' closures, read-only, and nothing else of
	// the store.
	var inputs []store.Path
	info := BuildInfo{Hash: h, Out: p.String(), Derivation: d, Inputs: map[string]InputInfo{}}
	for _, name := range d.InputNames() {
		ih := d.Inputs[name]
		ip := g.PathOf(ih)
		inputs = append(inputs, ip)
		id := g.Derivations[ih]
		info.Inputs[name] = InputInfo{Path: ip.String(), Name: id.Name, Version: id.Version, Builder: id.Builder, Attrs: id.Attrs, OutputHash: id.OutputHash}
	}
	closure, err := st.Closure(ctx, inputs...)
	if err != nil {
		return nil, fail("", err)
	}

	infoJSON, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, fail("", err)
	}
	if err := writeBuildInfo(filepath.Join(lay.heph, "build.json"), infoJSON); err != nil {
		return nil, fail("", err)
	}

	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fail("", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fail("", err)
	}
	defer logFile.Close()
	rec := store.BuildRecord{Drv: h, Started: st.Now().Unix(), Log: logPath}

	spec, err := sandboxSpec(st, g, h, opts, lay, closure, logFile)
	if err != nil {
		// Copying a local source may find the disk full.
		return nil, fail("", st.SpaceError(err))
	}
	if err := sandbox.Run(ctx, spec); err != nil {
		st.RecordBuild(ctx, rec, "failed")
		// A builder that filled the disk could not log its ENOSPC.
		return nil, fail(logPath, st.SpaceError(err, tail(logPath, 5)...))
	}
	out := filepath.Join(lay.store, p.Base())
	if _, err := os.Lstat(out); err != nil {
		st.RecordBuild(ctx, rec, "failed")
		return nil, fail(logPath, fmt.Errorf("the builder succeeded but did not create its output $out (%s)", p))
	}
	return &builderOutput{out: out, closure: closure, rec: rec, fail: func(err error) error { return fail(logPath, err) }}, nil
}

// sandboxSpec says how h is built: its environment, its mounts (its
// inputs' closure read-only, an empty store to write its output to,
// /build, /.heph with build.json, the file of a fetch-file), its builder
// and arguments.
func sandboxSpec(st *store.Store, g *store.Graph, h store.DrvHash, opts Options, lay buildLayout, closure []store.Path, log *os.File) (*sandbox.Spec, error) {
	d := g.Derivations[h]
	spec := &sandbox.Spec{
		Env:     buildEnv(g, d, g.PathOf(h), opts),
		Dir:     "/build",
		Network: d.IsFixedOutput() && ownFetcher(d.Builder),
		// A fixed-output build whose builder is the user's reaches public
		// addresses only, never the host.
		Outbound: d.IsFixedOutput() && !ownFetcher(d.Builder),
		Timeout:  opts.Timeout,
		Limits:   sandbox.DefaultLimits,
		Stdout:   log,
		Stderr:   log,
		Mounts: []sandbox.Mount{
			{Source: lay.store, Target: store.Dir, Writable: true},
			{Source: lay.build, Target: "/build", Writable: true},
			{Source: lay.heph, Target: "/.heph"},
		},
		WorkDir: lay.work,
	}
	// The derivation's own limits (never in its hash) replace the
	// defaults; Options.Timeout, if set, overrides its timeout.
	if l, ok := g.Limits[h]; ok {
		for _, f := range []struct{ set, to *int64 }{{&l.Memory, &spec.Limits.Memory}, {&l.Pids, &spec.Limits.Pids}, {&l.Tmp, &spec.Limits.Tmpfs}, {&l.Disk, &spec.Limits.Disk}} {
			if *f.set > 0 {
				*f.to = *f.set
			}
		}
		if spec.Timeout == 0 {
			spec.Timeout = l.Timeout
		}
	}
	for _, c := range closure {
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: st.Physical(c), Target: c.String()})
	}
	if d.IsFixedOutput() {
		spec.Mounts = append(spec.Mounts, fileProxyMounts(opts.Getenv)...)
	}
	if _, err := os.Stat(aptDir); err == nil && d.Builder == builtins.FetchDeb {
		// fetch-deb reads the archive the host's apt is configured for.
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: aptDir, Target: aptDir})
	}
	if d.Builder == builtins.FetchFile {
		file, _ := d.Attrs["file"].(string)
		if !filepath.IsLocal(file) || opts.SourceDir == "" {
			return nil, fmt.Errorf("fetch-file: %q is not a file below the configuration's directory", file)
		}
		// The source is copied here, on the host, through localsrc, into
		// the read-only /.heph: nothing outside the configuration's
		// directory is read (a bind mount would follow a symbolic link
		// anywhere). The builder copies it again into $out, so the output
		// is what it always was.
		if err := copyLocalSource(d, opts.SourceDir, file, filepath.Join(lay.heph, "src"), spec.Env); err != nil {
			return nil, err
		}
	}
	if name, ok := builtins.Short(d.Builder); ok {
		spec.Builtin = name
	} else {
		spec.Program = expand(g, d, d.Builder)
	}
	for _, a := range d.Args {
		spec.Args = append(spec.Args, expand(g, d, a))
	}
	return spec, nil
}

// aptDir is the host's apt configuration, which fetch-deb reads.
const aptDir = "/etc/apt"

// maxLocalBytes bounds a local source unless the build's environment sets
// fetchLimitEnv (builder.DefaultMaxLocalBytes, builder.FetchLimitEnv).
const (
	maxLocalBytes = 4 << 30
	fetchLimitEnv = "HEPH_MAX_FETCH_BYTES"
)

// copyLocalSource copies the fetch-file d's source, file beneath dir, to
// dst with d's include and exclude filters. A path that leads outside dir
// is a *localsrc.EscapeError.
func copyLocalSource(d *store.Derivation, dir, file, dst string, env []string) error {
	var f localsrc.Filter
	f.Include, _ = stringsAttr(d.Attrs, "include") // the builder reports a bad list
	f.Exclude, _ = stringsAttr(d.Attrs, "exclude")
	limit := int64(maxLocalBytes)
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, fetchLimitEnv+"="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				limit = n
			}
		}
	}
	_, err := localsrc.Copy(dir, file, f, dst, limit)
	if errors.Is(err, localsrc.ErrTooLarge) {
		return fmt.Errorf("fetch-file: %s: %w (raise the derivation's fetch limit, %s in the builder's environment)", file, err, fetchLimitEnv)
	}
	if err != nil {
		return fmt.Errorf("fetch-file: %s: %w", file, err)
	}
	return nil
}

// stringsAttr returns the list of strings attrs[key], if there is one.
func stringsAttr(attrs map[string]any, key string) ([]string, error) {
	list, _ := attrs[key].([]any)
	var out []string
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("attrs.%s is not a list of strings", key)
		}
		out = append(out, s)
	}
	return out, nil
}

// ownFetcher reports whether builder is one of hephc's built-in fetchers,
// whose code is ours: they alone share the host's network (a GOPROXY on
// localhost is common).
func ownFetcher(builder string) bool {
	switch builder {
	case builtins.FetchGoMod, builtins.FetchFile, builtins.FetchGoModGraph, builtins.FetchDeb:
		return true
	}
	return false
}

// expand replaces every @{input} in s (store.Placeholders) by the input's
// store path; a placeholder naming no input is left as it is.
func expand(g *store.Graph, d *store.Derivation, s string) string {
	for _, name := range store.Placeholders(s) {
		if h, ok := d.Inputs[name]; ok {
			s = strings.ReplaceAll(s, "@{"+name+"}", g.PathOf(h).String())
		}
	}
	return s
}

func buildEnv(g *store.Graph, d *store.Derivation, p store.Path, opts Options) []string {
	env := make(map[string]string)
	if d.IsFixedOutput() && opts.Getenv != nil {
		for _, k := range fetchEnv {
			if v := opts.Getenv(k); v != "" {
				env[k] = v
			}
		}
	}
	for k, v := range d.Env {
		env[k] = expand(g, d, v)
	}
	for k, v := range fixedEnv {
		env[k] = v
	}
	env["out"] = p.String()
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
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
func verifyFixedOutput(d *store.Derivation, out string, got store.OutputHash) error {
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
