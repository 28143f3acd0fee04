package embedreg

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTraversalRefused hands distribution's handler, without the
// server's mux in front, repository names that climb out of the
// registry's directory: each is refused (a name that is not one) or
// redirected to its cleaned path (never served as given), and nothing is
// made.
func TestTraversalRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "registry")
	r, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, path := range []string{
		"/v2/../../escape/blobs/uploads/",
		"/v2/heph/../../../escape/blobs/uploads/",
		"/v2/heph/./x/blobs/uploads/",
		"/v2/heph//x/blobs/uploads/",
		"/v2/%2e%2e/escape/blobs/uploads/",
	} {
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		req.URL.Path, req.RequestURI = path, path
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		switch loc := w.Header().Get("Location"); {
		case w.Code >= 400:
		case w.Code == http.StatusMovedPermanently && !strings.Contains(loc, "..") && !strings.Contains(loc, "//"):
		default:
			t.Errorf("POST %s: %d (Location %q), want it refused", path, w.Code, loc)
		}
	}
	// A valid name is accepted: the refusals above are the names'.
	req := httptest.NewRequest(http.MethodPost, "/v2/heph/blobs/uploads/", nil)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusAccepted {
		t.Errorf("POST /v2/heph/blobs/uploads/: %d %s", w.Code, w.Body)
	}
	filepath.Walk(filepath.Dir(dir), func(p string, _ os.FileInfo, err error) error {
		if strings.Contains(p, "escape") {
			t.Errorf("%s was made", p)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, "docker", "registry", "v2", "repositories", "heph", "x")); err == nil {
		t.Errorf("heph/x was made")
	}
}
