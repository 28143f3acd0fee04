package sandbox

import (
	"os"
	"regexp"
	"testing"
)

// TestHelperXSysVersion: the helper is built with go.mod's golang.org/x/sys.
func TestHelperXSysVersion(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*golang.org/x/sys (v\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod requires no golang.org/x/sys")
	}
	if string(m[1]) != xsysVersion {
		t.Fatalf("xsysVersion is %s, go.mod requires %s: update helper.go", xsysVersion, m[1])
	}
}

// TestHelperBuildsAndRuns builds the helper (as the first Run would, but
// waiting for it) and runs builds with it as their init, a builtin among
// them (ExePath is then this executable, not the helper).
func TestHelperBuildsAndRuns(t *testing.T) {
	requireNamespaces(t)
	if os.Getenv(InitEnv) == "self" {
		t.Skip(InitEnv + "=self")
	}
	if _, _, err := helperKey(); err != nil {
		t.Skip("no cache directory: ", err)
	}
	if _, err := goTool(); err != nil {
		t.Skip("no go command: ", err)
	}
	exe := WaitInitHelper()
	if exe == "" {
		t.Fatalf("no helper: %v", helperErr)
	}
	if !trusted(exe) {
		t.Fatalf("%s is not trusted", exe)
	}
	if err := Run(t.Context(), &Spec{Builtin: "true"}); err != nil {
		t.Fatal(err)
	}
}

// TestHelperGoneFallsBack: a helper removed after it was found (a cleaned
// cache) makes Run start this executable as the init instead.
func TestHelperGoneFallsBack(t *testing.T) {
	requireNamespaces(t)
	exe := WaitInitHelper()
	if exe == "" {
		t.Skipf("no helper: %v", helperErr)
	}
	gone := exe + ".gone"
	helperReady.Store(&gone)
	defer helperReady.Store(&exe)
	if err := Run(t.Context(), &Spec{Builtin: "true"}); err != nil {
		t.Fatal(err)
	}
}
