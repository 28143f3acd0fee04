// Package imagetest runs an image's tests (#ImageTest, defs/tests.cue):
// it boots the image in the host's QEMU (TCG) and drives its serial
// console with steps — wait for a line, send a line and expect an answer
// — each with a timeout, and keeps the console's transcript. The test
// derivation (policy.Tests) names the image and the host's QEMU version,
// so a new QEMU makes a new test, which is run again.
package imagetest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"

	"hephc.dev/hephc/srcpos"
)

// Test is one image test, as the #Image's tests field holds it.
type Test struct {
	Name   string
	Memory string
	Steps  []Step
}

// Step is one step of a test: Wait, or Send and then Expect when set.
type Step struct {
	Wait    string
	Send    *string
	Expect  string
	Timeout time.Duration
	// Pos is where the step is written (not part of the test's identity).
	Pos srcpos.Pos
}

// String describes the step, as results list it.
func (s Step) String() string {
	switch {
	case s.Send == nil:
		return "wait " + strconv.Quote(s.Wait)
	case s.Expect == "":
		return "send " + strconv.Quote(*s.Send)
	default:
		return "send " + strconv.Quote(*s.Send) + ", expect " + strconv.Quote(s.Expect)
	}
}

// stepJSON is a step in the tests field (eval.Meta.Tests), with the
// position eval adds.
type stepJSON struct {
	Wait    string  `json:"wait"`
	Send    *string `json:"send"`
	Expect  string  `json:"expect"`
	Timeout string  `json:"timeout"`
	Pos     *struct {
		File      string `json:"file"`
		Line, Col string
	} `json:"pos"`
}

type testJSON struct {
	Memory string     `json:"memory"`
	Steps  []stepJSON `json:"steps"`
}

// Parse reads an #Image's tests field (eval.Meta.Tests), sorted by name.
// attr names the image, for errors.
func Parse(attr string, data []byte) ([]Test, error) {
	var m map[string]testJSON
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s.tests: %w", attr, err)
	}
	var out []Test
	for name, tj := range m {
		t := Test{Name: name, Memory: tj.Memory}
		if t.Memory == "" {
			t.Memory = "512M"
		}
		for i, sj := range tj.Steps {
			s := Step{Wait: sj.Wait, Send: sj.Send, Expect: sj.Expect}
			if sj.Pos != nil {
				s.Pos.File = sj.Pos.File
				s.Pos.Line, _ = strconv.Atoi(sj.Pos.Line)
				s.Pos.Col, _ = strconv.Atoi(sj.Pos.Col)
			}
			where := fmt.Sprintf("%s.tests.%s.steps[%d]", attr, name, i)
			if s.Pos.IsValid() {
				where += " (" + s.Pos.String() + ")"
			}
			d, err := time.ParseDuration(sj.Timeout)
			if sj.Timeout == "" {
				d, err = time.Minute, nil
			}
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("%s: timeout %q is not a positive duration", where, sj.Timeout)
			}
			s.Timeout = d
			if (s.Wait == "") == (s.Send == nil) {
				return nil, fmt.Errorf("%s: a step either waits for a line or sends one", where)
			}
			for _, re := range []string{s.Wait, s.Expect} {
				if _, err := regexp.Compile(re); err != nil {
					return nil, fmt.Errorf("%s: %v", where, err)
				}
			}
			t.Steps = append(t.Steps, s)
		}
		if len(t.Steps) == 0 {
			return nil, fmt.Errorf("%s.tests.%s: no steps", attr, name)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Attrs are the test derivation's attrs: the steps without their
// positions (moving a step in the file does not make a new test), the
// guest's memory, and the host's QEMU version.
func (t Test) Attrs(qemuVersion string) map[string]any {
	steps := make([]any, len(t.Steps))
	for i, s := range t.Steps {
		m := map[string]any{"timeout": s.Timeout.String()}
		if s.Send == nil {
			m["wait"] = s.Wait
		} else {
			m["send"] = *s.Send
			if s.Expect != "" {
				m["expect"] = s.Expect
			}
		}
		steps[i] = m
	}
	return map[string]any{"steps": steps, "memory": t.Memory, "qemu": qemuVersion}
}
