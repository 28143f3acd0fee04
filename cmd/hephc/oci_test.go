package main

import (
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
// after it. Without them a script fails under HEPHC_E2E=1 and is skipped
// otherwise. Other scripts get none.
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
	return nil
}

type scriptSetupError struct{ msg string }

func (e *scriptSetupError) Error() string { return e.msg }
