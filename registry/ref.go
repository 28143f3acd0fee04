package registry

import (
	"fmt"
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Schemes of a registry reference. oci:// is HTTPS, or plain HTTP for a
// registry on a loopback address; oci+http:// allows plain HTTP to any
// host, as the user says so.
const (
	SchemeOCI     = "oci://"
	SchemeOCIHTTP = "oci+http://"
)

// Ref is a repository of an OCI registry, and a tag in it when one is
// given: oci://HOST[:PORT]/REPO[:TAG].
type Ref struct {
	Repo name.Repository
	// Tag is the tag given, "" for none.
	Tag string
	// PlainHTTP says plain HTTP is allowed to this registry: it is on a
	// loopback address, or the reference said oci+http://.
	PlainHTTP bool
}

// ParseRef parses oci://HOST[:PORT]/REPO[:TAG] (or oci+http://…).
func ParseRef(s string) (Ref, error) {
	rest, insecure := "", false
	switch {
	case strings.HasPrefix(s, SchemeOCI):
		rest = s[len(SchemeOCI):]
	case strings.HasPrefix(s, SchemeOCIHTTP):
		rest, insecure = s[len(SchemeOCIHTTP):], true
	default:
		return Ref{}, fmt.Errorf("registry %q: want oci://HOST/REPOSITORY (or oci+http:// for plain HTTP)", s)
	}
	host, path, ok := strings.Cut(rest, "/")
	if !ok || host == "" || path == "" {
		return Ref{}, fmt.Errorf("registry %q: want oci://HOST/REPOSITORY", s)
	}
	tag := ""
	if i := strings.LastIndexByte(path, ':'); i >= 0 {
		path, tag = path[:i], path[i+1:]
	}
	opts := []name.Option{name.StrictValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return Ref{}, fmt.Errorf("registry %q: %w", s, err)
	}
	repo, err := name.NewRepository(reg.Name()+"/"+path, opts...)
	if err != nil {
		return Ref{}, fmt.Errorf("registry %q: %w", s, err)
	}
	if tag != "" {
		if _, err := name.NewTag(repo.Name()+":"+tag, opts...); err != nil {
			return Ref{}, fmt.Errorf("registry %q: %w", s, err)
		}
	}
	return Ref{Repo: repo, Tag: tag, PlainHTTP: insecure || IsLoopback(host)}, nil
}

// String returns the reference as ParseRef reads it.
func (r Ref) String() string {
	s := SchemeOCI
	if r.PlainHTTP && !IsLoopback(r.Repo.RegistryStr()) {
		s = SchemeOCIHTTP
	}
	s += r.Repo.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	return s
}

// IsLoopback reports whether host (HOST or HOST:PORT) is a loopback
// address: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
