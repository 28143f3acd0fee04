package builder

import (
	"bytes"
	"strings"
	"testing"
)

// go test -json is read into the checks that passed, failed and were
// skipped (tests as PACKAGE.Test, packages as PACKAGE), sorted, and the
// human output is what go test would print.
func TestReadTestEvents(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"start","Package":"example.com/a"}`,
		`{"Action":"run","Package":"example.com/a","Test":"TestB"}`,
		`{"Action":"output","Package":"example.com/a","Test":"TestB","Output":"--- PASS: TestB (0.00s)\n"}`,
		`{"Action":"pass","Package":"example.com/a","Test":"TestB"}`,
		`{"Action":"pass","Package":"example.com/a","Test":"TestA"}`,
		`{"Action":"skip","Package":"example.com/a","Test":"TestSkipped"}`,
		`{"Action":"pass","Package":"example.com/a"}`,
		`{"Action":"fail","Package":"example.com/b","Test":"TestBroken/sub"}`,
		`{"Action":"fail","Package":"example.com/b"}`,
		`{"Action":"skip","Package":"example.com/c"}`,
		`# example.com/d`,
	}, "\n")
	var out bytes.Buffer
	res := readTestEvents(strings.NewReader(in), &out)
	want := map[string][]string{
		"passed":  {"example.com/a", "example.com/a.TestA", "example.com/a.TestB"},
		"failed":  {"example.com/b", "example.com/b.TestBroken/sub"},
		"skipped": {"example.com/a.TestSkipped"},
	}
	for k, got := range map[string][]string{"passed": res.Passed, "failed": res.Failed, "skipped": res.Skipped} {
		if strings.Join(got, " ") != strings.Join(want[k], " ") {
			t.Errorf("%s: %q, want %q", k, got, want[k])
		}
	}
	if out.String() != "--- PASS: TestB (0.00s)\n# example.com/d\n" {
		t.Errorf("output %q", out.String())
	}
}
