package realize

// How a build's sandbox is made: its environment and its mounts.

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/localsrc"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/store"
)

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
