package registry

import (
	"context"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"hephc.dev/hephc/trust"
)

// Credentials come from the user's docker configuration, as every OCI
// tool reads it ($DOCKER_CONFIG/config.json here): with them a registry
// that asks for them takes a push and gives a substitution; without
// them, or with wrong ones, it refuses both.
func TestCredentialsFromDockerConfig(t *testing.T) {
	reg := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "alice" || pass != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="hephc test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you?"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	ref, err := ParseRef("oci://" + addr + "/private")
	if err != nil {
		t.Fatal(err)
	}
	src := newStore(t)
	ps := sample(t, src)
	sign(t, src, ps, "alice", "bob")
	dockerConfig := func(auth string) {
		dir := t.TempDir()
		cfg := `{"auths": {"` + addr + `": {"auth": "` + base64.StdEncoding.EncodeToString([]byte(auth)) + `"}}}`
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DOCKER_CONFIG", dir)
	}
	substitute := func() (*SubstituteResult, error) {
		dst := newStore(t)
		return (&Client{}).Substitute(context.Background(), dst, wants(ps...), SubstituteOptions{Caches: []Ref{ref}, OwnerPolicies: []*trust.Policy{testPolicy(t, 2)}, Now: testNow})
	}

	dockerConfig("alice:wrong")
	if _, err := (&Client{Retries: 1}).Push(context.Background(), src, ps, ref, PushOptions{Attestations: trust.StoreDir(src.Dir)}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("push with wrong credentials: %v", err)
	}
	dockerConfig("alice:s3cret")
	if _, err := (&Client{}).Push(context.Background(), src, ps, ref, PushOptions{Attestations: trust.StoreDir(src.Dir)}); err != nil {
		t.Fatal(err)
	}
	if res, err := substitute(); err != nil || len(res.Substituted) != 2 {
		t.Fatalf("substituting with the credentials: %+v %v", res, err)
	}
	dockerConfig("alice:wrong")
	res, err := substitute()
	if err != nil || len(res.Substituted) != 0 || len(res.Unreachable) != 1 || !strings.Contains(res.Unreachable[0], "UNAUTHORIZED") {
		t.Fatalf("substituting with wrong credentials: %+v %v", res, err)
	}
}
