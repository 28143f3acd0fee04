// Package registrytest gives tests real OCI registries on loopback: the
// distribution v3 registry and Debian's docker-registry (distribution
// 2.8), either those .ci/run started (their addresses in
// HEPHC_TEST_REGISTRY_V3 and HEPHC_TEST_REGISTRY_DEBIAN) or started here
// from their binaries, and go-containerregistry's registry run in the
// test process. Neither distribution release has the OCI 1.1 referrers
// API (v3.1.2's source has no referrers handler): their clients use the
// referrers tag schema; go-containerregistry's registry has the API.
package registrytest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a running registry.
type Registry struct {
	// Name says which: "distribution-v3", "debian-docker-registry" or
	// "go-containerregistry".
	Name string
	// Addr is HOST:PORT on loopback.
	Addr string
	// Referrers says the registry has the OCI 1.1 referrers API.
	Referrers bool
}

// Repo returns oci://ADDR/NAME-RANDOM: a repository no other test uses.
func (r Registry) Repo(name string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "oci://" + r.Addr + "/" + name + "-" + hex.EncodeToString(b)
}

// kinds are the registries tests use: the environment variable .ci/run
// sets, and the binaries that serve them.
var kinds = []struct {
	name, env string
	bins      []string
	referrers bool
}{
	{"distribution-v3", "HEPHC_TEST_REGISTRY_V3", []string{"registry", filepath.Join(os.Getenv("HOME"), "go", "bin", "registry")}, false},
	{"debian-docker-registry", "HEPHC_TEST_REGISTRY_DEBIAN", []string{"docker-registry"}, false},
}

// All returns the three registries. When a distribution registry is
// neither given by .ci/run nor can be started, the test fails under
// HEPHC_E2E=1 (CI, where nothing may skip) and is skipped otherwise.
// Registries started here stop when the test ends.
func All(t testing.TB) []Registry {
	t.Helper()
	regs, missing := Start(t.Cleanup, t.TempDir())
	if missing != "" {
		if os.Getenv("HEPHC_E2E") == "1" {
			t.Fatal(missing)
		}
		t.Skip(missing)
	}
	return regs
}

// Start returns the registries it could have: those .ci/run gave, the
// others started here with their data under dir, stopped by the
// functions it hands to cleanup. missing, when not "", says which it
// could not have and why.
func Start(cleanup func(func()), dir string) (regs []Registry, missing string) {
	var problems []string
	for i, k := range kinds {
		if addr := os.Getenv(k.env); addr != "" {
			regs = append(regs, Registry{Name: k.name, Addr: addr, Referrers: k.referrers})
			continue
		}
		r, err := start(cleanup, filepath.Join(dir, fmt.Sprint(i)), k.name, k.bins, k.referrers)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s (set %s, or install it: %v)", k.name, k.env, err))
			continue
		}
		regs = append(regs, r)
	}
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	cleanup(srv.Close)
	regs = append(regs, Registry{Name: "go-containerregistry", Addr: srv.Listener.Addr().String(), Referrers: true})
	if len(problems) > 0 {
		missing = "no registry " + strings.Join(problems, "; ")
	}
	return regs, missing
}

// Env returns the environment variables that give tests the registries:
// HEPHC_TEST_REGISTRY_V3, HEPHC_TEST_REGISTRY_DEBIAN and
// HEPHC_TEST_REGISTRY_GGCR (with the referrers API), NAME=ADDR each.
func Env(regs []Registry) []string {
	names := map[string]string{"distribution-v3": "HEPHC_TEST_REGISTRY_V3", "debian-docker-registry": "HEPHC_TEST_REGISTRY_DEBIAN", "go-containerregistry": "HEPHC_TEST_REGISTRY_GGCR"}
	var out []string
	for _, r := range regs {
		out = append(out, names[r.Name]+"="+r.Addr)
	}
	return out
}

// start runs one of bins (the first found) serving a fresh directory on a
// free loopback port, until the test ends.
func start(cleanup func(func()), dir, name string, bins []string, referrers bool) (Registry, error) {
	var bin string
	for _, b := range bins {
		if p, err := exec.LookPath(b); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return Registry{}, fmt.Errorf("none of %s found", strings.Join(bins, ", "))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Registry{}, err
	}
	var tries []string
	for try := 0; try < 3; try++ {
		addr, err := freePort()
		if err != nil {
			return Registry{}, err
		}
		cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n  secret: hephc-test\n", filepath.Join(dir, "data"), addr)
		file := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			return Registry{}, err
		}
		logFile, err := os.Create(filepath.Join(dir, "log"))
		if err != nil {
			return Registry{}, err
		}
		defer logFile.Close()
		cmd := exec.Command(bin, "serve", file)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return Registry{}, err
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		if err := waitUp(addr, exited); err != nil {
			stop()
			b, _ := os.ReadFile(logFile.Name())
			tries = append(tries, fmt.Sprintf("on %s: %v: %s", addr, err, b))
			continue
		}
		cleanup(stop)
		return Registry{Name: name, Addr: addr, Referrers: referrers}, nil
	}
	return Registry{}, fmt.Errorf("%s did not start: %s", bin, strings.Join(tries, "; "))
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitUp waits until the registry at addr answers /v2/, or exits.
func waitUp(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("it exited")
		default:
		}
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s", addr)
}
