package builder

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/modfetch"
)

func init() { register(builtins.FetchGoMod, fetchGoMod) }

// fetchGoMod fetches a module's zip from the module proxies in GOPROXY,
// checks it against the pinned h1: sum before anything is written, and
// extracts it into $out. The toolchain module's zip carries no executable
// bits; its programs get them back, as the go command does when it
// switches toolchains.
func fetchGoMod(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	mod, err := attr(info, "module")
	if err != nil {
		return err
	}
	ver, err := attr(info, "version")
	if err != nil {
		return err
	}
	want := info.Derivation.OutputHash
	proxies := getenv(env, "GOPROXY")
	limit, err := fetchLimit(env, DefaultMaxZipBytes)
	if err != nil {
		return err
	}
	zipPath := filepath.Join("/build", "module.zip")
	if err := download(proxies, mod, ver, zipPath, limit, stdout); err != nil {
		return err
	}
	if err := modfetch.Unzip(info.Out, module.Version{Path: mod, Version: ver}, zipPath, want); err != nil {
		return fmt.Errorf("%w; nothing was stored", err)
	}
	fmt.Fprintf(stdout, "verified %s@%s %s\n", mod, ver, want)
	return nil
}

// FetchLimitEnv names the variable of a fetch's environment that bounds,
// in bytes, what it reads: a module's zip (fetch-gomod), the go.mod files
// together (fetch-gomod-graph), a local source (fetch-file). Each
// download is cut off as soon as it passes the limit, before its hash is
// checked. The store sets it from the derivation's limits, outside the
// derivation's hash.
const FetchLimitEnv = "HEPH_MAX_FETCH_BYTES"

// Default fetch limits, where the environment sets none.
const (
	// DefaultMaxZipBytes is what the go command itself accepts as a
	// module's zip (golang.org/toolchain's is about 240 MB).
	DefaultMaxZipBytes = modzip.MaxZipFile
	// DefaultMaxGoModGraphBytes bounds a module graph's go.mod files
	// together; each is also at most modzip.MaxGoMod.
	DefaultMaxGoModGraphBytes = 256 << 20
	// DefaultMaxLocalBytes bounds a local source.
	DefaultMaxLocalBytes = 4 << 30
)

// fetchLimit returns the fetch limit env sets, else def.
func fetchLimit(env []string, def int64) (int64, error) {
	v := getenv(env, FetchLimitEnv)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive number of bytes", FetchLimitEnv, v)
	}
	return n, nil
}

// tooLargeError is a download cut off at its limit.
type tooLargeError struct {
	what  string
	limit int64
	fixed bool // a limit of the go command's, not the fetch limit
}

func (e *tooLargeError) Error() string {
	if e.fixed {
		return fmt.Sprintf("%s is larger than %d bytes, and was cut off there; nothing was stored", e.what, e.limit)
	}
	return fmt.Sprintf("%s is larger than the fetch limit of %d bytes, and was cut off there; nothing was stored (raise the derivation's fetch limit, %s in the builder's environment)",
		e.what, e.limit, FetchLimitEnv)
}

func tooLarge(what string, limit int64) error { return &tooLargeError{what: what, limit: limit} }

// download fetches mod@ver's zip, at most limit bytes, from the first proxy
// in the list that has it: after "," only a 404 or 410 moves on, after "|"
// any error does.
func download(proxies, mod, ver, dest string, limit int64, log io.Writer) error {
	emod, err := module.EscapePath(mod)
	if err != nil {
		return fmt.Errorf("module path %q: %w", mod, err)
	}
	ever, err := module.EscapeVersion(ver)
	if err != nil {
		return fmt.Errorf("module version %q: %w", ver, err)
	}
	err = fromProxies(proxies, func(base string) error {
		url := base + "/" + emod + "/@v/" + ever + ".zip"
		fmt.Fprintf(log, "fetching %s\n", url)
		n, err := fetchURL(url, dest, limit)
		if err == nil {
			fmt.Fprintf(log, "fetched %d bytes\n", n)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("fetching %s@%s: %w", mod, ver, err)
	}
	return nil
}

// fromProxies calls fetch with each module proxy of a GOPROXY list in
// turn until one succeeds, as the go command asks them (modfetch.Proxies).
func fromProxies(proxies string, fetch func(base string) error) error {
	ps, err := modfetch.ParseProxies(proxies)
	if err != nil {
		return err
	}
	return ps.Each(fetch)
}

// fetchURL copies what the http(s) or file URL url holds to the new file
// dest, at most limit bytes: past them it stops reading and fails.
func fetchURL(url, dest string, limit int64) (int64, error) {
	var body io.ReadCloser
	if path, ok := strings.CutPrefix(url, "file://"); ok {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%s: %w", url, modfetch.ErrNotFound)
		}
		if err != nil {
			return 0, err
		}
		body = f
	} else {
		client := &http.Client{Timeout: 30 * time.Minute}
		resp, err := client.Get(url)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
			resp.Body.Close()
			return 0, fmt.Errorf("%s: %s: %w", url, resp.Status, modfetch.ErrNotFound)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return 0, fmt.Errorf("%s: %s", url, resp.Status)
		}
		if resp.ContentLength > limit {
			resp.Body.Close()
			return 0, tooLarge(fmt.Sprintf("%s (Content-Length %d)", url, resp.ContentLength), limit)
		}
		body = resp.Body
	}
	defer body.Close()
	f, err := os.Create(dest)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, io.LimitReader(body, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("%s: %w", url, err)
	}
	if n > limit {
		return n, tooLarge(url, limit)
	}
	return n, nil
}
