package builder

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"hephc.dev/hephc/builtins"
)

func init() { register(builtins.FetchGoMod, fetchGoMod) }

// DefaultGoProxy is the module proxy when GOPROXY is unset, as for the go
// command.
const DefaultGoProxy = "https://proxy.golang.org,direct"

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
	if proxies == "" {
		proxies = DefaultGoProxy
	}
	zipPath := filepath.Join("/build", "module.zip")
	if err := download(proxies, mod, ver, zipPath, stdout); err != nil {
		return err
	}
	got, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		return fmt.Errorf("%s@%s: the download is corrupt (%w); pinned %s; nothing was stored", mod, ver, err, want)
	}
	if got != want {
		return fmt.Errorf("%s@%s: hash mismatch: pinned %s, the proxy served %s; nothing was stored", mod, ver, want, got)
	}
	fmt.Fprintf(stdout, "verified %s@%s %s\n", mod, ver, got)
	if err := modzip.Unzip(info.Out, module.Version{Path: mod, Version: ver}, zipPath); err != nil {
		return fmt.Errorf("extracting %s@%s: %w", mod, ver, err)
	}
	if mod == "golang.org/toolchain" {
		return markToolchainExecutable(info.Out)
	}
	return nil
}

// download fetches mod@ver's zip from the first proxy in the list that has
// it: after "," only a 404 or 410 moves on, after "|" any error does.
func download(proxies, mod, ver, dest string, log io.Writer) error {
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
		n, err := fetchURL(url, dest)
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
// turn until one succeeds: after "," only a not-found error (404, 410)
// moves on, after "|" any error does. "off" forbids fetching; "direct" is
// not supported (pins are module zips and go.mod files, not VCS).
func fromProxies(proxies string, fetch func(base string) error) error {
	var errs []error
	rest := proxies
	for rest != "" {
		var proxy string
		fallThroughAny := false
		if i := strings.IndexAny(rest, ",|"); i >= 0 {
			proxy, fallThroughAny, rest = rest[:i], rest[i] == '|', rest[i+1:]
		} else {
			proxy, rest = rest, ""
		}
		proxy = strings.TrimSpace(proxy)
		switch proxy {
		case "":
			continue
		case "off":
			return fmt.Errorf("GOPROXY=off forbids downloads")
		case "direct", "noproxy":
			errs = append(errs, fmt.Errorf("%s: fetching from version control is not supported (pins are module zips)", proxy))
			continue
		}
		err := fetch(strings.TrimSuffix(proxy, "/"))
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if !fallThroughAny && !errors.Is(err, errNotFound) {
			break
		}
	}
	return errors.Join(errs...)
}

var errNotFound = errors.New("not found")

func fetchURL(url, dest string) (int64, error) {
	var body io.ReadCloser
	if path, ok := strings.CutPrefix(url, "file://"); ok {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%s: %w", url, errNotFound)
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
			return 0, fmt.Errorf("%s: %s: %w", url, resp.Status, errNotFound)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return 0, fmt.Errorf("%s: %s", url, resp.Status)
		}
		body = resp.Body
	}
	defer body.Close()
	f, err := os.Create(dest)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("%s: %w", url, err)
	}
	return n, nil
}

// markToolchainExecutable sets the executable bits the toolchain zip
// cannot carry: bin/* and pkg/tool/*/*.
func markToolchainExecutable(root string) error {
	for _, pattern := range []string{"bin/*", "pkg/tool/*/*"} {
		files, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return err
		}
		for _, f := range files {
			fi, err := os.Lstat(f)
			if err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				if err := os.Chmod(f, fi.Mode()|0o111); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
