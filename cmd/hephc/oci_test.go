package main

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"hephc.dev/hephc/internal/registrytest"
)

// ociRegistries gives the oci_*.txtar scripts real registries on
// loopback, as $HEPHC_TEST_REGISTRY_V3 (distribution v3),
// $HEPHC_TEST_REGISTRY_DEBIAN (Debian's docker-registry) and
// $HEPHC_TEST_REGISTRY_GGCR (go-containerregistry's, with the referrers
// API): those .ci/run started, or started for the script and stopped
// after it, and $HEPHC_TEST_REGISTRY_STALL, a proxy of the first that
// stalls mid-blob (stallingProxy), and $NS, a namespace for the
// script's repositories (oci://$HEPHC_TEST_REGISTRY_V3/$NS/heph). Without them a script fails under
// HEPHC_E2E=1 and is skipped otherwise. Other scripts get none.
func ociRegistries(e *testscript.Env) error {
	named, ok := e.T().(interface{ Name() string })
	if !ok || !strings.HasPrefix(filepath.Base(named.Name()), "oci_") {
		return nil
	}
	regs, missing := registrytest.Start(e.Defer, filepath.Join(e.WorkDir, ".registries"))
	if missing != "" {
		if os.Getenv("HEPHC_E2E") == "1" {
			return &scriptSetupError{missing}
		}
		e.T().Skip(missing)
	}
	for _, kv := range registrytest.Env(regs) {
		k, v, _ := strings.Cut(kv, "=")
		e.Setenv(k, v)
	}
	// Repositories of the script's own: registries .ci/run started are
	// shared by every test.
	b := make([]byte, 4)
	rand.Read(b)
	e.Setenv("NS", "t"+hex.EncodeToString(b))
	stall := httptest.NewServer(stallingProxy(regs[0].Addr, filepath.Join(e.WorkDir, ".stalled")))
	e.Defer(stall.Close)
	e.Setenv("HEPHC_TEST_REGISTRY_STALL", stall.Listener.Addr().String())
	return nil
}

// stallingProxy passes requests to the registry at addr, but sends only
// the first 64 KiB of a larger blob: then it creates the file marker and
// sends nothing more until the client goes away. A script kills a
// substitution there, mid-layer.
func stallingProxy(addr, marker string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.RequestURI(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		if !strings.Contains(r.URL.Path, "/blobs/") || resp.ContentLength <= 64<<10 {
			io.Copy(w, resp.Body)
			return
		}
		io.CopyN(w, resp.Body, 64<<10)
		w.(http.Flusher).Flush()
		os.WriteFile(marker, nil, 0o644)
		<-r.Context().Done()
	})
}

type scriptSetupError struct{ msg string }

func (e *scriptSetupError) Error() string { return e.msg }
