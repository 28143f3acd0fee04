package realize

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/dirhash"

	"hephc.dev/hephc/fstree"
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
// build in the same directory left, if any (nothing of it stays), else as
// a new file. It is written over in place and cut to its new length, not
// truncated first: truncating frees its block, and on ext4 mounted with
// discard and no journal each freed block is discarded synchronously
// (about 1.3 ms a build here).
func writeBuildInfo(path string, data []byte) error {
	err := overwrite(path, data)
	if errors.Is(err, fs.ErrPermission) { // read-only to a caller that is not root
		os.Remove(path)
		err = overwrite(path, data)
	}
	return err
}

// overwrite writes data over the start of the file at path (made, mode
// 0444, if missing) and cuts it to len(data).
func overwrite(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o444)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
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
