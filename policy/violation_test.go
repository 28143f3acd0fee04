package policy

import (
	"slices"
	"testing"

	"cuelang.org/go/cue/errors"

	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/srcpos"
)

func TestViolationIsACUEError(t *testing.T) {
	v := Violation{
		Rule: "licenses.allow", Attr: `modules."golang.org/x/crypto".meta.license`, Text: "license GPL-3.0-only is not allowed",
		Policy: srcposAt("/work/policy.cue", 4, 3), System: srcposAt("/work/system.cue", 12, 14),
	}
	var e errors.Error = v
	if p := e.Position(); p.Filename() != "/work/system.cue" || p.Line() != 12 || p.Column() != 14 {
		t.Errorf("Position() = %v, want the configuration's /work/system.cue:12:14", lang.SourcePos(p))
	}
	in := e.InputPositions()
	if len(in) != 1 || in[0].Filename() != "/work/policy.cue" || in[0].Line() != 4 || in[0].Column() != 3 {
		t.Errorf("InputPositions() = %v, want the policy's /work/policy.cue:4:3", in)
	}
	if got, want := e.Path(), []string{"modules", `"golang.org/x/crypto"`, "meta", "license"}; !slices.Equal(got, want) {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	if f, args := e.Msg(); f != "%s" || len(args) != 1 || args[0] != v.Text {
		t.Errorf("Msg() = %q, %v; want %%s and the text", f, args)
	}
	if got, want := e.Error(), v.Attr+": "+v.Text; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := errors.Errors(e); len(got) != 1 || got[0] != e {
		t.Errorf("errors.Errors of a violation = %v, want the violation", got)
	}

	// No position in the configuration: no CUE position.
	v.System = srcposAt("", 0, 0)
	if v.Position().IsValid() {
		t.Errorf("Position() of a violation without one = %v, want token.NoPos", v.Position())
	}
}

func TestViolationPath(t *testing.T) {
	for _, c := range []struct {
		attr string
		want []string
	}{
		{"", nil},
		{"images.ws", []string{"images", "ws"}},
		{"images.ws.files[0]", []string{"images", "ws", "files", "0"}},
		// Not a CUE path its selectors spell again: whole.
		{"a.0", []string{"a.0"}},
		{"a b", []string{"a b"}},
	} {
		if got := (Violation{Attr: c.attr}).Path(); !slices.Equal(got, c.want) {
			t.Errorf("Path() of %q = %q, want %q", c.attr, got, c.want)
		}
	}
}

func TestViolationsError(t *testing.T) {
	vs := Violations{
		{Rule: "r", Attr: "a.b", Text: "no", Policy: srcposAt("/p/policy.cue", 1, 2), System: srcposAt("/s/system.cue", 3, 4)},
		{Rule: "q", Attr: "c", Text: "never"},
	}
	want := "/s/system.cue:3:4: a.b: no\n\t/p/policy.cue:1:2: rule r\nhephc: c: never\n\t?: rule q\nhephc: 2 violations of policy"
	if got := vs.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	if got := vs.Summary(); got != "2 violations of policy" {
		t.Errorf("Summary() = %q", got)
	}
	if got := vs[:1].Summary(); got != "1 violation of policy" {
		t.Errorf("Summary() of one = %q", got)
	}
}

func srcposAt(file string, line, col int) srcpos.Pos {
	return srcpos.Pos{File: file, Line: line, Col: col}
}
