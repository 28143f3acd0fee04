package builder_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hephc.dev/hephc/realize"
)

// TestFetchGoModThroughLoopbackProxy: hephc's own fetcher reaches a module
// proxy on the host's 127.0.0.1 (a local mirror is common): it keeps the
// host's network, which a user's fixed-output builder does not get.
func TestFetchGoModThroughLoopbackProxy(t *testing.T) {
	proxy, sum := fakeProxy(t, "example.com/m", "v1.0.0")
	srv := httptest.NewServer(http.FileServer(http.Dir(proxy)))
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("the test proxy is at %s, want 127.0.0.1", srv.URL)
	}
	env := func(k string) string {
		if k == "GOPROXY" {
			return srv.URL
		}
		return ""
	}
	st, p, err := realizeOne(t, goModule("example.com/m", "v1.0.0", sum), realize.Options{Getenv: env})
	if err != nil {
		t.Fatalf("%v\n%s", err, logTail(err))
	}
	if b, err := os.ReadFile(filepath.Join(st.Physical(p), "m.go")); err != nil || !strings.Contains(string(b), "Answer = 42") {
		t.Errorf("got %q (%v), want the module's file", b, err)
	}
}
