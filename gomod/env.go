// Package gomod resolves and pins Go modules for hephc add and hephc
// update: it asks the module proxies of GOPROXY, checks a main module
// against the Go checksum database, fetches and verifies the pinned
// toolchain, and runs that toolchain to work out exactly the modules a
// program's packages need, as the offline build will select them.
package gomod

import (
	"slices"
	"strings"
)

// DefaultProxy and DefaultSumDB are the go command's defaults.
const (
	DefaultProxy = "https://proxy.golang.org,direct"
	DefaultSumDB = "sum.golang.org"
)

// Env is the part of the user's environment that resolution honours, as
// the go command reads it. Everything else of the go command's
// environment is fixed (GOFLAGS, GOTOOLCHAIN, GOOS, GOARCH, CGO_ENABLED):
// builds are offline, static and for linux/amd64.
type Env struct {
	GOPROXY   string // module proxies; "direct" entries are dropped (pins come from proxies)
	GOSUMDB   string // checksum database; "off" checks nothing
	GONOSUMDB string // module path patterns not checked (default GOPRIVATE)
	// Pass is what the go command gets of the rest of the environment:
	// HOME (for .netrc), network proxies and certificates.
	Pass []string
}

// passed are the variables handed through to the go command unchanged.
var passed = []string{
	"HOME", "USER", "TMPDIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "NETRC", "GOAUTH",
	"GOPRIVATE", "GONOPROXY", "GOINSECURE",
}

// EnvFrom reads Env with getenv, defaulting as the go command does.
func EnvFrom(getenv func(string) string) Env {
	e := Env{
		GOPROXY:   getenv("GOPROXY"),
		GOSUMDB:   getenv("GOSUMDB"),
		GONOSUMDB: getenv("GONOSUMDB"),
	}
	if e.GOPROXY == "" {
		e.GOPROXY = DefaultProxy
	}
	if e.GOSUMDB == "" {
		e.GOSUMDB = DefaultSumDB
	}
	if e.GONOSUMDB == "" {
		e.GONOSUMDB = getenv("GOPRIVATE")
	}
	for _, k := range passed {
		if v := getenv(k); v != "" {
			e.Pass = append(e.Pass, k+"="+v)
		}
	}
	slices.Sort(e.Pass)
	return e
}

// value returns the value of k in a KEY=VALUE list.
func value(env []string, k string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v
		}
	}
	return ""
}
