package eval

import (
	"strconv"

	"cuelang.org/go/cue"
)

// stepPositions adds to each step of an #Image's tests (data, the tests
// field t as data) the position of the step in the configuration, as
// "pos": {"file", "line", "col"}: a failing step is reported there, and
// Meta.Tests survives the evaluation cache, which CUE values do not. The
// tests never enter a hash; the test derivation made from them leaves the
// positions out (policy.Tests). A #GoProgram's tests have no steps and
// are returned as they are.
func stepPositions(t cue.Value, data any) any {
	tests, ok := data.(map[string]any)
	if !ok {
		return data
	}
	for name, test := range tests {
		m, ok := test.(map[string]any)
		if !ok {
			continue
		}
		steps, ok := m["steps"].([]any)
		if !ok {
			continue
		}
		for i, step := range steps {
			sm, ok := step.(map[string]any)
			if !ok {
				continue
			}
			v := t.LookupPath(cue.MakePath(cue.Str(name), cue.Str("steps"), cue.Index(i)))
			if p := ValuePos(v); p.IsValid() {
				sm["pos"] = map[string]any{"file": p.File, "line": strconv.Itoa(p.Line), "col": strconv.Itoa(p.Col)}
			}
		}
	}
	return data
}
