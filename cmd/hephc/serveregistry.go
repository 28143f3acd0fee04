package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"

	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/server"
	"hephc.dev/hephc/server/embedreg"
)

// openRegistry sets cfg's registry to the one server: names (name, or
// --registry): an external one (oci://HOST/REPOSITORY), reached with
// go-containerregistry, or, when none is named or "embedded", the one
// embedded in the server, under its data directory dir, served at /v2/
// on its own listener (returned; nil for an external one). The function
// returned closes it.
func (s *serverSpec) openRegistry(ctx context.Context, name, dir string, cfg *server.Config) (*embedreg.Registry, func() error, error) {
	if name == "" || name == server.EmbeddedRegistry {
		r, err := embedreg.Open(ctx, filepath.Join(dir, embedreg.Dir))
		if err != nil {
			return nil, nil, err
		}
		cfg.Registry, cfg.RegistryName = r, server.EmbeddedRegistry
		return r, r.Close, nil
	}
	ref, err := registry.ParseRef(name)
	if err != nil {
		return nil, nil, s.errorf("%v", err)
	}
	cfg.Registry, cfg.RegistryName = &server.RemoteRegistry{Repo: ref.Repo}, ref.String()
	return nil, func() error { return nil }, nil
}

// handler is the server's API, with the embedded registry's at /v2/
// behind the server's tokens.
func handler(s *server.Server, embedded *embedreg.Registry) http.Handler {
	if embedded == nil {
		return s.Handler()
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", s.GuardRegistry(embedded))
	mux.Handle("/", s.Handler())
	return mux
}

// registryDesc says where the packages are.
func registryDesc(name string) string {
	if name == server.EmbeddedRegistry {
		return "the embedded registry (/v2/)"
	}
	return name
}

// serverRegistry is the registry a server's GET /health names (name), or
// --registry's, and the client to reach it with. The embedded registry is
// at the server's own address: reached over c's connection (pinned to its
// certificate) with c's token; an external one with the user's docker
// credentials.
func serverRegistry(c *server.Client, name string) (registry.Ref, *registry.Client, error) {
	if name != server.EmbeddedRegistry {
		ref, err := registry.ParseRef(name)
		return ref, &registry.Client{}, err
	}
	u, err := url.Parse(c.Base)
	if err != nil {
		return registry.Ref{}, nil, err
	}
	ref, err := registry.ParseRef("oci://" + u.Host + "/" + embedreg.Repository)
	if err != nil {
		return registry.Ref{}, nil, fmt.Errorf("%s: %w", c.Base, err)
	}
	rc := &registry.Client{Keychain: tokenKeychain{host: ref.Repo.RegistryStr(), token: c.Token}}
	if c.HTTP != nil {
		if tr, ok := c.HTTP.Transport.(*http.Transport); ok {
			rc.Transport = tr.Clone()
		}
	}
	return ref, rc, nil
}

// tokenKeychain gives the server's token to its own registry only.
type tokenKeychain struct{ host, token string }

func (k tokenKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if k.token == "" || r.RegistryStr() != k.host {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{RegistryToken: k.token}), nil
}
