package lang

import (
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/srcpos"
)

// SourcePos returns p as hephc's position type; token.NoPos gives the zero
// Pos.
func SourcePos(p token.Pos) srcpos.Pos {
	if !p.IsValid() {
		return srcpos.Pos{}
	}
	return srcpos.Pos{File: p.Filename(), Line: p.Line(), Col: p.Column()}
}

// TokenPos returns p as a CUE token.Pos, for hephc's own errors that carry
// a srcpos.Pos (it survives the evaluation cache, a token.Pos does not)
// and implement CUE's errors.Error. The position's file holds no source,
// only what is needed to say the file, line and column; SourcePos gives p
// back (a column below 1 becomes 1). The zero Pos gives token.NoPos.
func TokenPos(p srcpos.Pos) token.Pos {
	if !p.IsValid() {
		return token.NoPos
	}
	col := max(p.Col, 1)
	// A one-line file of col bytes whose line is declared to be p.Line,
	// as a //line comment would: the last byte is at p.Line, column col.
	f := token.NewFile(p.File, -1, col)
	f.AddLineInfo(0, p.File, p.Line)
	return f.Pos(col-1, token.NoRelPos)
}
