package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// rules say which imports a package of hephc may never have, directly or
// not (DESIGN.md, "The pipeline").
var rules = []struct {
	pkg       string
	forbidden []string // import path prefixes
}{
	{"hephc.dev/hephc/defs", []string{"hephc.dev/hephc/", "cuelang.org/go"}},
	{"hephc.dev/hephc/store", []string{"cuelang.org/go", "hephc.dev/hephc/eval", "hephc.dev/hephc/lang", "hephc.dev/hephc/defs", "hephc.dev/hephc/policy", "hephc.dev/hephc/cmd"}},
	{"hephc.dev/hephc/lang", []string{"hephc.dev/hephc/eval", "hephc.dev/hephc/store", "hephc.dev/hephc/policy", "hephc.dev/hephc/cmd"}},
	{"hephc.dev/hephc/eval", []string{"hephc.dev/hephc/lang", "hephc.dev/hephc/policy", "hephc.dev/hephc/cmd"}},
	// policy reads configurations and graphs; it never builds.
	{"hephc.dev/hephc/policy", []string{"hephc.dev/hephc/builder", "hephc.dev/hephc/cmd"}},
}

func TestImportDirections(t *testing.T) {
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", r.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", r.pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 2 {
			t.Fatalf("go list -deps %s listed %d packages; want the package and its dependencies", r.pkg, len(deps))
		}
		for _, d := range deps {
			if d == r.pkg {
				continue
			}
			for _, f := range r.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s (directly or not); DESIGN.md forbids %s*", r.pkg, d, f)
				}
			}
		}
	}
}
