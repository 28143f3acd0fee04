// Package srcpos is the one position type of hephc: a file, line and column
// in a configuration, and the one place that formats it ("file:line:col").
// It is a leaf: it imports nothing of hephc and no CUE, so the store's
// graph, eval, lang, policy and the CLI all carry the same value.
package srcpos

import (
	"cmp"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Pos is a position in a source file. File is absolute when it comes from
// evaluation; the zero Pos is "no position".
type Pos struct {
	File      string
	Line, Col int
}

// IsValid reports whether p names a position.
func (p Pos) IsValid() bool { return p.File != "" && p.Line > 0 }

// String formats p as file:line:col ("" for the zero Pos).
func (p Pos) String() string {
	if !p.IsValid() {
		return ""
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Parse reads a position as String writes it, file:line:col (the file
// may hold colons); "" is the zero Pos.
func Parse(s string) (Pos, error) {
	if s == "" {
		return Pos{}, nil
	}
	rest, col, ok := cutLast(s)
	file, line, ok2 := cutLast(rest)
	p := Pos{File: file}
	var errLine, errCol error
	p.Line, errLine = strconv.Atoi(line)
	p.Col, errCol = strconv.Atoi(col)
	if !ok || !ok2 || errLine != nil || errCol != nil || !p.IsValid() || p.Col < 0 {
		return Pos{}, fmt.Errorf("position %q: want file:line:col", s)
	}
	return p, nil
}

func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// Rel formats p as String does, with File relative to cwd when it lies
// below it.
func (p Pos) Rel(cwd string) string {
	return p.RelTo(cwd).String()
}

// RelTo returns p with File relative to cwd when it lies below it.
func (p Pos) RelTo(cwd string) Pos {
	p.File = RelPath(cwd, p.File)
	return p
}

// Compare orders positions by file, line and column; it returns -1, 0 or
// +1 as p is before, at or after q.
func (p Pos) Compare(q Pos) int {
	if c := strings.Compare(p.File, q.File); c != 0 {
		return c
	}
	if c := cmp.Compare(p.Line, q.Line); c != 0 {
		return c
	}
	return cmp.Compare(p.Col, q.Col)
}

// RelPath returns path relative to cwd when path is absolute and lies below
// cwd; otherwise path unchanged.
func RelPath(cwd, path string) string {
	if path == "" || !filepath.IsAbs(path) || cwd == "" {
		return path
	}
	rel, err := filepath.Rel(cwd, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return path
	}
	return rel
}
