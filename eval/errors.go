package eval

import (
	"fmt"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/srcpos"
)

// Error is an error about a value of the configuration: where it is (in
// the user's files), what path it has, and further positions that explain
// it. It implements cuelang.org/go/cue/errors.Error so that all errors of
// an evaluation are one list, rendered in one way.
type Error struct {
	Pos     token.Pos
	Related []token.Pos
	// Attr is the CUE path of the offending value.
	Attr string
	Text string
}

var _ errors.Error = (*Error)(nil)

func (e *Error) Position() token.Pos         { return e.Pos }
func (e *Error) InputPositions() []token.Pos { return e.Related }
func (e *Error) Error() string {
	if e.Attr == "" {
		return e.Text
	}
	return e.Attr + ": " + e.Text
}
func (e *Error) Path() []string {
	if e.Attr == "" {
		return nil
	}
	return strings.Split(e.Attr, ".")
}
func (e *Error) Msg() (string, []any) { return "%s", []any{e.Text} }

// errorf returns an Error about v at attr.
func errorf(v cue.Value, attr string, format string, args ...any) *Error {
	return &Error{Pos: userPos(v), Attr: attr, Text: fmt.Sprintf(format, args...)}
}

// userPos returns v's position in the user's files, looking through the
// conjuncts of v when its own position is in the schema (as for a field
// whose first conjunct is the schema's constraint).
func userPos(v cue.Value) token.Pos {
	return userPosDepth(v, 0)
}

func userPosDepth(v cue.Value, depth int) token.Pos {
	p := v.Pos()
	if p.IsValid() && !defs.IsSchemaFile(p.Filename()) || depth > 6 {
		return p
	}
	if op, args := v.Expr(); op == cue.AndOp || op == cue.OrOp {
		for _, a := range args {
			if q := userPosDepth(a, depth+1); q.IsValid() && !defs.IsSchemaFile(q.Filename()) {
				return q
			}
		}
	}
	return p
}

// FieldPos returns where the value at path (a CUE path such as
// modules.x_sys.sum) is written in the user's files.
func FieldPos(root cue.Value, path string) (srcpos.Pos, bool) {
	p := cue.ParsePath(path)
	if p.Err() != nil {
		return srcpos.Pos{}, false
	}
	v := root.LookupPath(p)
	if !v.Exists() {
		return srcpos.Pos{}, false
	}
	pos := userPos(v)
	if !pos.IsValid() || defs.IsSchemaFile(pos.Filename()) {
		return srcpos.Pos{}, false
	}
	return posOf(pos), true
}

// ValuePos returns where v is written in the user's files (looking through
// the schema's conjuncts), or the zero srcpos.Pos.
func ValuePos(v cue.Value) srcpos.Pos {
	p := userPos(v)
	if !p.IsValid() || defs.IsSchemaFile(p.Filename()) {
		return srcpos.Pos{}
	}
	return posOf(p)
}
