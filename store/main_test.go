package store_test

import (
	"os"
	"testing"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/sandbox"
)

// The GC tests realize graphs: the test binary is the sandbox's init too.
func TestMain(m *testing.M) {
	sandbox.Init()
	os.Exit(storetest.Main(m))
}
