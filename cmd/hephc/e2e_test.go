package main

import (
	"os"
	"testing"
)

// e2e reports whether end-to-end tests must run (CI sets HEPHC_E2E=1).
func e2e(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("HEPHC_E2E") != "1" {
		t.Skipf("set HEPHC_E2E=1 to run: %s", why)
	}
}
