package gomod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/modfetch"
)

// Proxy asks the module proxies of a GOPROXY list (modfetch.Proxies) for
// versions, go.mod files and zips, as the go command asks them.
type Proxy struct {
	*modfetch.Proxies
	client *http.Client
}

// NewProxy parses a GOPROXY value.
func NewProxy(goproxy string) (*Proxy, error) {
	ps, err := modfetch.ParseProxies(goproxy)
	if err != nil {
		return nil, err
	}
	return &Proxy{Proxies: ps, client: &http.Client{Timeout: 10 * time.Minute}}, nil
}

// NotFoundError says that no proxy has what was asked for.
type NotFoundError struct {
	What string // e.g. "module example.com/m", "example.com/m@v1.2.3"
	Msg  string // the last proxy's answer
}

func (e *NotFoundError) Error() string {
	if e.Msg == "" {
		return e.What + ": not found"
	}
	return e.What + ": not found (" + e.Msg + ")"
}

// errNotFound marks one proxy's not-found answer.
var errNotFound = modfetch.ErrNotFound

// maxSmallFile bounds what a proxy may send as a version list, an .info
// or a go.mod.
const maxSmallFile = 16 << 20

// each asks every proxy in turn with try, as the go command does; when
// none has what, the error is a NotFoundError.
func (p *Proxy) each(what string, try func(base string) error) error {
	err := p.Proxies.Each(try)
	if errors.Is(err, errNotFound) {
		return &NotFoundError{What: what, Msg: strings.TrimSuffix(strings.TrimPrefix(err.Error(), "not found: "), ": not found")}
	}
	return err
}

// get fetches one file of at most limit bytes from one proxy.
func (p *Proxy) get(ctx context.Context, rawURL string, limit int64) ([]byte, error) {
	rc, err := p.open(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rawURL, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", rawURL, limit)
	}
	return b, nil
}

// open opens an http(s) or file URL; a missing file, a 404 or a 410 is
// errNotFound.
func (p *Proxy) open(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	if path, ok := strings.CutPrefix(rawURL, "file://"); ok {
		f, err := os.Open(filepath.FromSlash(path))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", errNotFound, rawURL)
		}
		return f, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	msg := firstLine(string(body))
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
		if msg == "" {
			msg = rawURL + ": " + resp.Status
		}
		return nil, fmt.Errorf("%w: %s", errNotFound, msg)
	}
	if msg != "" {
		return nil, fmt.Errorf("%s: %s: %s", rawURL, resp.Status, msg)
	}
	return nil, fmt.Errorf("%s: %s", rawURL, resp.Status)
}

// firstLine is the first line of s, trimmed and cut to 200 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.TrimSpace(s)
}

// escaped returns the proxy path prefix of a module ("PATH/@v/") and the
// escaped version (when version is not "").
func escaped(path, version string) (string, string, error) {
	ep, err := module.EscapePath(path)
	if err != nil {
		return "", "", fmt.Errorf("module path %q: %w", path, err)
	}
	if version == "" {
		return ep + "/@v/", "", nil
	}
	ev, err := module.EscapeVersion(version)
	if err != nil {
		return "", "", fmt.Errorf("version %q of %s: %w", version, path, err)
	}
	return ep + "/@v/", ev, nil
}

// Versions lists the tagged versions a proxy knows for a module (the
// first proxy that knows the module answers); none when it has none.
func (p *Proxy) Versions(ctx context.Context, path string) ([]string, error) {
	prefix, _, err := escaped(path, "")
	if err != nil {
		return nil, err
	}
	var list []string
	err = p.each("module "+path, func(base string) error {
		b, err := p.get(ctx, base+"/"+prefix+"list", maxSmallFile)
		if err != nil {
			return err
		}
		list = strings.Fields(string(b))
		return nil
	})
	return list, err
}

// Info is a proxy's answer about one version.
type Info struct {
	Version string
	Time    time.Time
}

// Info asks for the canonical version of a query the proxy resolves: a
// version, a pseudo-version, or a revision the proxy knows.
func (p *Proxy) Info(ctx context.Context, path, query string) (Info, error) {
	prefix, ev, err := escaped(path, query)
	if err != nil {
		return Info{}, err
	}
	return p.info(ctx, path, path+"@"+query, prefix+ev+".info")
}

// Latest asks for the proxy's latest version of a module (its @latest,
// which the go command uses when the module has no tagged version).
func (p *Proxy) Latest(ctx context.Context, path string) (Info, error) {
	prefix, _, err := escaped(path, "")
	if err != nil {
		return Info{}, err
	}
	return p.info(ctx, path, "module "+path, strings.TrimSuffix(prefix, "/@v/")+"/@latest")
}

func (p *Proxy) info(ctx context.Context, path, what, rel string) (Info, error) {
	var info Info
	err := p.each(what, func(base string) error {
		b, err := p.get(ctx, base+"/"+rel, maxSmallFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &info); err != nil {
			return fmt.Errorf("%s/%s: %w", base, rel, err)
		}
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	if err := module.Check(path, info.Version); err != nil {
		return Info{}, fmt.Errorf("%s: the proxy answered version %q: %w", what, info.Version, err)
	}
	return info, nil
}

// GoMod fetches a module version's go.mod file. It is not checked here:
// the caller checks it against a sum.
func (p *Proxy) GoMod(ctx context.Context, path, version string) ([]byte, error) {
	prefix, ev, err := escaped(path, version)
	if err != nil {
		return nil, err
	}
	var b []byte
	err = p.each(path+"@"+version, func(base string) error {
		var err error
		b, err = p.get(ctx, base+"/"+prefix+ev+".mod", maxSmallFile)
		return err
	})
	return b, err
}

// Zip fetches a module version's zip into the file dst. It is not checked
// here: the caller checks it against a sum before using it.
func (p *Proxy) Zip(ctx context.Context, path, version, dst string) error {
	prefix, ev, err := escaped(path, version)
	if err != nil {
		return err
	}
	return p.each(path+"@"+version, func(base string) error {
		rc, err := p.open(ctx, base+"/"+prefix+ev+".zip")
		if err != nil {
			return err
		}
		defer rc.Close()
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, io.LimitReader(rc, modfetch.MaxZipBytes+1))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && n > modfetch.MaxZipBytes {
			err = fmt.Errorf("larger than %d bytes", modfetch.MaxZipBytes)
		}
		if err != nil {
			return fmt.Errorf("fetching %s@%s from %s: %w", path, version, base, err)
		}
		return nil
	})
}
