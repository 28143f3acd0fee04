package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

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

// GuardRegistry puts the server's tokens in front of an embedded
// registry's OCI distribution API (/v2/…, embedreg): a push (any method
// but GET and HEAD) needs a publisher's token, a pull one of the reader
// role only with Config.PrivateReads, deletion is refused. A token is
// given as the API's ("Authorization: Bearer TOKEN") or as a password
// (Basic, any user name: docker login, crane auth login). Without one the
// answer is 401 with a Basic challenge (so that OCI clients send their
// credentials: /v2/ always asks for them); with a token of the wrong role
// it is 403. Every refused write and every manifest pushed is written in
// the audit log.
func (s *Server) GuardRegistry(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, role, given, ok := s.registryCaller(r)
		write := r.Method != http.MethodGet && r.Method != http.MethodHead
		need := Publisher
		if !write {
			need = Reader
		}
		var refuse string
		switch {
		case given && !ok && (write || s.cfg.PrivateReads):
			// An open pull ignores a bad token, as the API's reads do.
			refuse = "the token is not valid"
		case r.Method == http.MethodDelete:
			refuse = "nothing is deleted from the server's registry"
		case r.URL.Path == "/v2/" && !given:
			// The ping: ask for credentials, whatever the next request is.
			challenge(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		case (write || s.cfg.PrivateReads) && !role.Allows(need):
			action := "pull from the registry"
			if write {
				action = "push to the registry"
			}
			err := &ForbiddenError{Who: who, Action: action, Need: string(need)}
			if ok {
				err.Who = who + " (" + string(role) + ")"
			}
			refuse = err.Error()
		}
		if refuse != "" {
			logged := who
			if !ok {
				logged = "anonymous " + remoteAddr(r)
			}
			s.audit(nil, logged, "registry", r.Method+" "+r.URL.Path, "forbidden", refuse)
			switch {
			case r.Method == http.MethodDelete:
				challenge(w, http.StatusMethodNotAllowed, "UNSUPPORTED", refuse)
			case ok:
				challenge(w, http.StatusForbidden, "DENIED", refuse)
			default:
				challenge(w, http.StatusUnauthorized, "UNAUTHORIZED", refuse)
			}
			return
		}
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
			h.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		outcome := "ok"
		if sw.status >= 300 {
			outcome = "refused"
		}
		s.audit(nil, who, "registry", r.Method+" "+r.URL.Path, outcome, http.StatusText(sw.status))
	})
}

// registryCaller returns who a registry request's token is: given says
// whether there was one, ok whether it is valid.
func (s *Server) registryCaller(r *http.Request) (who string, role Role, given, ok bool) {
	h := r.Header.Get("Authorization")
	tok, bearer := strings.CutPrefix(h, "Bearer ")
	if !bearer {
		_, pass, basic := r.BasicAuth()
		if !basic {
			return "", "", h != "", false
		}
		tok = pass
	}
	who, role, ok = s.Authenticate(r.Context(), strings.TrimSpace(tok))
	return who, role, true, ok
}

// challenge answers an OCI distribution error.
func challenge(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="hephc package server"`)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// EmbeddedRegistry is the name of the registry embedded in the server
// (server/embedreg) in its configuration and in GET /health: at the
// server's own address, /v2/, repository heph.
const EmbeddedRegistry = "embedded"
