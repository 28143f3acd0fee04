package lang_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/srcpos"
)

func TestTokenPos(t *testing.T) {
	for _, p := range []srcpos.Pos{
		{File: "/work/system.cue", Line: 1, Col: 1},
		{File: "/work/system.cue", Line: 5, Col: 30},
		{File: "policy.cue", Line: 123456, Col: 2},
		{File: "hephc.dev/heph/image.cue", Line: 3, Col: 9},
	} {
		tp := lang.TokenPos(p)
		if !tp.IsValid() {
			t.Errorf("TokenPos(%v) is not valid", p)
			continue
		}
		if tp.Filename() != p.File || tp.Line() != p.Line || tp.Column() != p.Col {
			t.Errorf("TokenPos(%v) = %v", p, lang.SourcePos(tp))
		}
		if got := lang.SourcePos(tp); got != p {
			t.Errorf("SourcePos(TokenPos(%v)) = %v", p, got)
		}
	}
	if tp := lang.TokenPos(srcpos.Pos{}); tp != token.NoPos {
		t.Errorf("TokenPos of the zero Pos = %v, want token.NoPos", tp)
	}
	if got := lang.SourcePos(token.NoPos); got != (srcpos.Pos{}) {
		t.Errorf("SourcePos(token.NoPos) = %v, want the zero Pos", got)
	}
}

// exact is an Exact error for the test.
type exact struct {
	pos     srcpos.Pos
	inputs  []srcpos.Pos
	notes   []string
	path    []string
	message string
}

func (e exact) Position() token.Pos { return lang.TokenPos(e.pos) }
func (e exact) InputPositions() []token.Pos {
	var ps []token.Pos
	for _, p := range e.inputs {
		ps = append(ps, lang.TokenPos(p))
	}
	return ps
}
func (e exact) Notes() []string      { return e.notes }
func (e exact) Path() []string       { return e.path }
func (e exact) Msg() (string, []any) { return "%s", []any{e.message} }
func (e exact) Error() string        { return e.message }

// summarized is a Summarized error for the test.
type summarized []cueerrors.Error

func (s summarized) Error() string             { return "summarized" }
func (s summarized) Errors() []cueerrors.Error { return s }
func (s summarized) Summary() string           { return fmt.Sprintf("%d problems", len(s)) }

func TestReport(t *testing.T) {
	cwd := "/work"
	in := func(file string, line, col int) srcpos.Pos {
		return srcpos.Pos{File: filepath.Join(cwd, file), Line: line, Col: col}
	}
	long := `"` + fmt.Sprint(make([]byte, 40)) + `"` // a long quoted string, not shortened
	one := exact{pos: in("system.cue", 3, 5), inputs: []srcpos.Pos{in("policy.cue", 2, 1), {}}, notes: []string{"rule a.b"}, path: []string{"pkgs", "age", "3", `"x.y"`}, message: "bad " + long}
	none := exact{inputs: []srcpos.Pos{{File: "/elsewhere/p.cue", Line: 1, Col: 2}}, notes: []string{"", "unused"}, message: "missing"}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"exact", one, "system.cue:3:5: pkgs.age[3].\"x.y\": bad " + long + "\n\tpolicy.cue:2:1: rule a.b\n\t?"},
		{"exact without a position or path", none, "hephc: missing\n\t/elsewhere/p.cue:1:2"},
		{"summarized", summarized{one, none}, "system.cue:3:5: pkgs.age[3].\"x.y\": bad " + long + "\n\tpolicy.cue:2:1: rule a.b\n\t?\nhephc: missing\n\t/elsewhere/p.cue:1:2\nhephc: 2 problems"},
		{"summarized, wrapped", fmt.Errorf("checking: %w", summarized{none}), "hephc: missing\n\t/elsewhere/p.cue:1:2\nhephc: 1 problems"},
		{"exact ones in a CUE list, sorted", cueerrors.Append(one, cueerrors.Newf(lang.TokenPos(in("a.cue", 1, 1)), "field not allowed")), "a.cue:1:1: field not allowed by the schema\nsystem.cue:3:5: pkgs.age[3].\"x.y\": bad " + long + "\n\tpolicy.cue:2:1: rule a.b\n\t?"},
		{"diagnostics", lang.Diagnostics{{Pos: srcpos.Pos{File: "a.cue", Line: 1, Col: 2}, Path: "x", Msg: "m", Related: []string{"schema: hephc.dev/heph/d.cue:3:4"}}, {Msg: "no position"}}, "a.cue:1:2: x: m\n\tschema: hephc.dev/heph/d.cue:3:4\nhephc: no position"},
		{"plain", errors.New(`a "` + long + `" field not allowed`), `hephc: a "` + long + `" field not allowed`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := lang.Report(cwd, c.err); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
	if ds := lang.DiagnoseIn(cwd, nil); ds != nil {
		t.Errorf("DiagnoseIn(nil) = %v, want none", ds)
	}
}
