package imagetest

import (
	"strings"
	"testing"
	"time"
)

// Parse reads eval's Meta.Tests of an image: steps with their
// positions; Attrs leaves the positions out and names the QEMU.
func TestParse(t *testing.T) {
	data := `{"console":{"memory":"1G","steps":[{"wait":"^OK$","timeout":"5m","pos":{"file":"/c/system.cue","line":"7","col":"4"}},{"send":"age-keygen","expect":"KEY","timeout":"2m"}]}}`
	ts, err := Parse("images.ws", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].Name != "console" || ts[0].Memory != "1G" || len(ts[0].Steps) != 2 {
		t.Fatalf("parsed %+v", ts)
	}
	s := ts[0].Steps[0]
	if s.Wait != "^OK$" || s.Timeout != 5*time.Minute || s.Pos.String() != "/c/system.cue:7:4" {
		t.Errorf("step 1: %+v", s)
	}
	a := ts[0].Attrs("QEMU emulator version 9.0")
	if a["qemu"] != "QEMU emulator version 9.0" || strings.Contains(strings.Join(flatten(a), " "), "system.cue") {
		t.Errorf("attrs %v", a)
	}
	for _, bad := range []struct{ data, want string }{
		{`{"x":{"steps":[{"wait":"a","send":"b"}]}}`, "images.ws.tests.x.steps[0]: a step either waits for a line or sends one"},
		{`{"x":{"steps":[{"wait":"(","timeout":"1s"}]}}`, "images.ws.tests.x.steps[0]: error parsing regexp"},
		{`{"x":{"steps":[{"wait":"a","timeout":"soon"}]}}`, `timeout "soon" is not a positive duration`},
		{`{"x":{"steps":[]}}`, "images.ws.tests.x: no steps"},
	} {
		if _, err := Parse("images.ws", []byte(bad.data)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%s) = %v, want %q", bad.data, err, bad.want)
		}
	}
}

func flatten(m map[string]any) []string {
	var out []string
	for k, v := range m {
		out = append(out, k)
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case []any:
			for _, e := range v {
				out = append(out, flatten(e.(map[string]any))...)
			}
		}
	}
	return out
}
