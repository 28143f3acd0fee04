// Package embedreg is the package server's embedded OCI registry: the
// distribution project's registry (github.com/distribution/distribution/v3,
// what Docker Hub, GitLab and Harbor run) as a library, with filesystem
// storage under the server's data directory, served on the server's own
// listener at /v2/ (behind its TLS and its tokens: server.GuardRegistry).
//
// Only the filesystem storage driver is linked: no cloud drivers. Deletion
// is off, foreign layer URLs are refused, and every blob and manifest is
// checked against its digest by distribution when it is pushed.
package embedreg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// Dir is the registry's directory in the server's data directory.
const Dir = "registry"

// Repository is the one repository the server's packages are pushed to
// and read from (oci://HOST/heph).
const Repository = "heph"

// Registry is an OCI distribution registry in the process.
type Registry struct {
	app  *handlers.App
	repo distribution.Repository
}

// Open serves the registry whose blobs and manifests are under dir
// (made, mode 0700, if missing).
func Open(ctx context.Context, dir string) (r *Registry, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded registry: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": false},
			// The server serves the blobs itself, never a redirect.
			"redirect": configuration.Parameters{"disable": true},
		},
	}
	// The secret signs the upload state a client carries between the
	// requests of one upload: new at each start (an upload does not
	// outlive the process).
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	// distribution logs through logrus: warnings and the server's own
	// errors, not what it answers a client 4xx for (a manifest looked up
	// before it is pushed, a refused blob: the client says those).
	logrus.SetLevel(logrus.WarnLevel)
	logrus.SetFormatter(serverErrors{&logrus.TextFormatter{}})
	defer func() {
		// NewApp panics on a bad configuration.
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("embedded registry: %v", p)
		}
	}()
	app := handlers.NewApp(ctx, cfg)
	// A second view of the same storage, for the server's own reads.
	ns, err := storage.NewRegistry(ctx, filesystem.New(filesystem.DriverParameters{RootDirectory: dir, MaxThreads: 100}))
	if err != nil {
		return nil, fmt.Errorf("embedded registry: %w", err)
	}
	named, err := reference.WithName(Repository)
	if err != nil {
		return nil, err
	}
	repo, err := ns.Repository(ctx, named)
	if err != nil {
		return nil, fmt.Errorf("embedded registry: %w", err)
	}
	return &Registry{app: app, repo: repo}, nil
}

// ServeHTTP serves the OCI distribution API (/v2/…) to anyone: put it
// behind the server's guard.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.app.ServeHTTP(w, req) }

// Close stops the registry's background work (the purge of abandoned
// uploads).
func (r *Registry) Close() error { return r.app.Shutdown() }

// Manifest returns the bytes of the manifest with digest d in the
// packages' repository.
func (r *Registry) Manifest(ctx context.Context, d string) ([]byte, error) {
	dg, err := digest.Parse(d)
	if err != nil {
		return nil, fmt.Errorf("embedded registry: manifest %q: %w", d, err)
	}
	ms, err := r.repo.Manifests(ctx)
	if err != nil {
		return nil, err
	}
	m, err := ms.Get(ctx, dg)
	if err != nil {
		return nil, fmt.Errorf("embedded registry: manifest %s: %w", d, err)
	}
	_, b, err := m.Payload()
	return b, err
}

// Blob opens the blob with digest d of the packages' repository.
func (r *Registry) Blob(ctx context.Context, d string) (io.ReadCloser, error) {
	dg, err := digest.Parse(d)
	if err != nil {
		return nil, fmt.Errorf("embedded registry: blob %q: %w", d, err)
	}
	rc, err := r.repo.Blobs(ctx).Open(ctx, dg)
	if err != nil {
		return nil, fmt.Errorf("embedded registry: blob %s: %w", d, err)
	}
	return rc, nil
}

// serverErrors formats distribution's log entries but those of a request
// answered with a client error.
type serverErrors struct{ logrus.Formatter }

func (f serverErrors) Format(e *logrus.Entry) ([]byte, error) {
	if c, ok := e.Data["err.code"].(errcode.ErrorCode); ok && c.Descriptor().HTTPStatusCode < 500 {
		return nil, nil
	}
	return f.Formatter.Format(e)
}
