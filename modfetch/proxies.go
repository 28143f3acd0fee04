// Package modfetch is the Go module system's formats as hephc's
// fetchers (builder) and its resolver (gomod) both use them: GOPROXY
// lists, a module zip checked against its h1: sum and extracted, the
// lines of go.sum, and a pinned module laid out as the go command's
// module cache. It imports nothing of hephc.
package modfetch

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultProxy is the module proxy list when GOPROXY is unset, as for the
// go command.
const DefaultProxy = "https://proxy.golang.org,direct"

// ErrNotFound marks a proxy's answer that it does not have what was
// asked for (a missing file, HTTP 404 or 410): after "," in a GOPROXY
// list only such an answer moves on to the next proxy.
var ErrNotFound = errors.New("not found")

// Proxies is a GOPROXY list: the module proxies asked in turn, as the go
// command asks them. "direct" and "noproxy" are dropped: a pin is fetched
// from a module proxy, never from version control, so nothing may be
// resolved that a build could not fetch. "off" ends the list.
type Proxies struct {
	entries []proxyEntry
}

type proxyEntry struct {
	base        string // without a trailing slash
	fallBackAny bool   // the entry after it is tried on any error
}

// ParseProxies parses a GOPROXY value ("" is DefaultProxy).
func ParseProxies(goproxy string) (*Proxies, error) {
	if goproxy == "" {
		goproxy = DefaultProxy
	}
	p := &Proxies{}
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
				return nil, fmt.Errorf("GOPROXY=%s: downloads are off, and pins are fetched from a module proxy", goproxy)
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
		return nil, fmt.Errorf("GOPROXY=%s names no module proxy (pins are fetched from module proxies only, never from version control)", goproxy)
	}
	return p, nil
}

// String is the list of proxies alone, as the go command is given it
// when it resolves with what a build can fetch.
func (p *Proxies) String() string {
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
func (p *Proxies) Bases() []string {
	var bs []string
	for _, e := range p.entries {
		bs = append(bs, e.base)
	}
	return bs
}

// Each calls try with each proxy's URL in turn until one succeeds: after
// "," only an error that is ErrNotFound moves on, after "|" any error
// does. It returns the error of the last proxy asked.
func (p *Proxies) Each(try func(base string) error) error {
	var last error
	for _, e := range p.entries {
		err := try(e.base)
		if err == nil {
			return nil
		}
		last = err
		if !e.fallBackAny && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return last
}
