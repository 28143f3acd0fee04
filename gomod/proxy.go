package gomod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// Proxy is the list of module proxies of a GOPROXY value, asked in turn as
// the go command asks them: after "," only a not-found answer (404, 410)
// moves on to the next, after "|" any failure does. Entries "direct" and
// "noproxy" are dropped: a pin is fetched from a proxy, never from version
// control, so resolving may not use anything a build could not fetch.
type Proxy struct {
	entries []proxyEntry
	client  *http.Client
}

type proxyEntry struct {
	base        string // without a trailing slash
	fallBackAny bool   // the entry after it is tried on any error
}

// NewProxy parses a GOPROXY value.
func NewProxy(goproxy string) (*Proxy, error) {
	p := &Proxy{client: &http.Client{Timeout: 10 * time.Minute}}
	rest := goproxy
	for rest != "" {
		var entry string
		anyErr := false
		if i := strings.IndexAny(rest, ",|"); i >= 0 {
			entry, anyErr, rest = rest[:i], rest[i] == '|', rest[i+1:]
		} else {
			entry, rest = rest, ""
		}
		entry = strings.TrimSpace(entry)
		switch entry {
		case "":
			continue
		case "off":
			if len(p.entries) == 0 {
				return nil, fmt.Errorf("GOPROXY=%s: downloads are off, and resolving needs a module proxy", goproxy)
			}
			rest = ""
			continue
		case "direct", "noproxy":
			continue
		}
		u, err := url.Parse(entry)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file") {
			return nil, fmt.Errorf("GOPROXY=%s: %q is not an http, https or file URL", goproxy, entry)
		}
		p.entries = append(p.entries, proxyEntry{base: strings.TrimSuffix(entry, "/"), fallBackAny: anyErr})
	}
	if len(p.entries) == 0 {
		return nil, fmt.Errorf("GOPROXY=%s names no module proxy (hephc fetches pins from proxies only, never from version control)", goproxy)
	}
	return p, nil
}

// String is the list as the go command gets it: the proxies alone, so
// that it resolves with what a build can fetch.
func (p *Proxy) String() string {
	var b strings.Builder
	for i, e := range p.entries {
		if i > 0 {
			if p.entries[i-1].fallBackAny {
				b.WriteByte('|')
			} else {
				b.WriteByte(',')
			}
		}
		b.WriteString(e.base)
	}
	return b.String()
}

// Bases are the proxies' URLs in order.
func (p *Proxy) Bases() []string {
	var bs []string
	for _, e := range p.entries {
		bs = append(bs, e.base)
	}
	return bs
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
var errNotFound = errors.New("not found")

// Limits on what a proxy may send.
const (
	maxSmallFile = 16 << 20 // a version list, an .info or a go.mod
	maxZipFile   = modzip.MaxZipFile
)

// each asks every proxy in turn with try, as the go command does.
func (p *Proxy) each(what string, try func(base string) error) error {
	var last error
	for _, e := range p.entries {
		err := try(e.base)
		if err == nil {
			return nil
		}
		last = err
		if !e.fallBackAny && !errors.Is(err, errNotFound) {
			return err
		}
	}
	if errors.Is(last, errNotFound) {
		return &NotFoundError{What: what, Msg: strings.TrimSuffix(strings.TrimPrefix(last.Error(), "not found: "), ": not found")}
	}
	return last
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
		n, err := io.Copy(f, io.LimitReader(rc, maxZipFile+1))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && n > maxZipFile {
			err = fmt.Errorf("larger than %d bytes", maxZipFile)
		}
		if err != nil {
			return fmt.Errorf("fetching %s@%s from %s: %w", path, version, base, err)
		}
		return nil
	})
}
