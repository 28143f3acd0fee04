package server

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is where the packages' OCI artifacts are (registry/'s
// per-path manifests and layers): read by digest. The server never
// trusts what it reads: Publish checks every digest itself.
type Registry interface {
	// Manifest returns the bytes of the manifest with digest d.
	Manifest(ctx context.Context, d string) ([]byte, error)
	// Blob opens the blob with digest d.
	Blob(ctx context.Context, d string) (io.ReadCloser, error)
}

// RemoteRegistry is a repository of an OCI registry (the embedded one or
// an external one: Harbor, zot, a cloud registry), reached with
// go-containerregistry.
type RemoteRegistry struct {
	Repo    name.Repository
	Options []remote.Option
}

// NewRemoteRegistry returns the repository repo ("host/path"); opts say
// how to reach it (authentication, transport).
func NewRemoteRegistry(repo string, opts ...remote.Option) (*RemoteRegistry, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w", repo, err)
	}
	return &RemoteRegistry{Repo: r, Options: opts}, nil
}

func (r *RemoteRegistry) opts(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx)}, r.Options...)
}

func (r *RemoteRegistry) Manifest(ctx context.Context, d string) ([]byte, error) {
	desc, err := remote.Get(r.Repo.Digest(d), r.opts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: manifest %s: %w", r.Repo, d, err)
	}
	return desc.Manifest, nil
}

func (r *RemoteRegistry) Blob(ctx context.Context, d string) (io.ReadCloser, error) {
	l, err := remote.Layer(r.Repo.Digest(d), r.opts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: blob %s: %w", r.Repo, d, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("registry %s: blob %s: %w", r.Repo, d, err)
	}
	return rc, nil
}
