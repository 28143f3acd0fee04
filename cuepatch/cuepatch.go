// Package cuepatch changes CUE source files in place: it replaces
// literals and expressions where the file's syntax tree says they are,
// and inserts text, keeping every other byte (comments, order, layout) as
// it was; the result is parsed again before it is written, atomically.
package cuepatch

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/literal"
	"cuelang.org/go/cue/parser"
)

// File is one CUE source file and the edits planned for it.
type File struct {
	Name  string // as given to Read or Parse
	src   []byte
	tree  *ast.File
	edits []edit
}

// edit replaces src[start:end] with text.
type edit struct {
	start, end int
	text       string
}

// Read reads and parses a CUE file.
func Read(name string) (*File, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return Parse(name, b)
}

// Parse parses src as the CUE file name.
func Parse(name string, src []byte) (*File, error) {
	tree, err := parser.ParseFile(name, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	return &File{Name: name, src: src, tree: tree}, nil
}

// Source is the file's content as read.
func (f *File) Source() []byte { return f.src }

// Syntax is the file's syntax tree as read; its offsets are the source's.
func (f *File) Syntax() *ast.File { return f.tree }

// Changed reports whether any edit is planned.
func (f *File) Changed() bool { return len(f.edits) > 0 }

// NodeAt returns the innermost node that starts at offset and satisfies
// match (nil for any node).
func (f *File) NodeAt(offset int, match func(ast.Node) bool) ast.Node {
	var found ast.Node
	ast.Walk(f.tree, func(n ast.Node) bool {
		p := n.Pos()
		if p.IsValid() && p.Offset() == offset && (match == nil || match(n)) {
			found = n
		}
		start, end := p.Offset(), n.End().Offset()
		// Descend only into nodes that may hold offset.
		return !p.IsValid() || !n.End().IsValid() || (start <= offset && offset < end)
	}, nil)
	return found
}

// StringAt returns the string literal that starts at offset and its value.
func (f *File) StringAt(offset int) (*ast.BasicLit, string, error) {
	n := f.NodeAt(offset, func(n ast.Node) bool { _, ok := n.(*ast.BasicLit); return ok })
	lit, _ := n.(*ast.BasicLit)
	if lit == nil {
		return nil, "", fmt.Errorf("%s: no literal at byte %d", f.Name, offset)
	}
	s, err := literal.Unquote(lit.Value)
	if err != nil {
		return nil, "", fmt.Errorf("%s:%d:%d: not a string literal: %s", f.Name, lit.Pos().Line(), lit.Pos().Column(), lit.Value)
	}
	return lit, s, nil
}

// ReplaceString replaces the string literal at offset, which must hold
// old, with a literal of new.
func (f *File) ReplaceString(offset int, old, new string) error {
	lit, s, err := f.StringAt(offset)
	if err != nil {
		return err
	}
	if s != old {
		return fmt.Errorf("%s:%d:%d: want %q here, found %q", f.Name, lit.Pos().Line(), lit.Pos().Column(), old, s)
	}
	if old == new {
		return nil
	}
	return f.Replace(lit, strconv.Quote(new))
}

// Replace replaces the whole text of node n with text.
func (f *File) Replace(n ast.Node, text string) error {
	start, end := n.Pos().Offset(), n.End().Offset()
	if !n.Pos().IsValid() || !n.End().IsValid() || start > end || end > len(f.src) {
		return fmt.Errorf("%s: node %T has no extent in the source", f.Name, n)
	}
	return f.add(edit{start, end, text})
}

// Insert inserts text at offset.
func (f *File) Insert(offset int, text string) error {
	if offset < 0 || offset > len(f.src) {
		return fmt.Errorf("%s: offset %d outside the file", f.Name, offset)
	}
	return f.add(edit{offset, offset, text})
}

// Delete removes src[start:end].
func (f *File) Delete(start, end int) error {
	if start < 0 || start > end || end > len(f.src) {
		return fmt.Errorf("%s: bytes %d-%d outside the file", f.Name, start, end)
	}
	return f.add(edit{start, end, ""})
}

// add plans an edit; edits may not overlap (insertions at one offset
// apply in the order planned, before a replacement that starts there).
func (f *File) add(e edit) error {
	for _, o := range f.edits {
		if e.start < o.end && o.start < e.end {
			return fmt.Errorf("%s: overlapping edits at bytes %d-%d and %d-%d", f.Name, o.start, o.end, e.start, e.end)
		}
	}
	f.edits = append(f.edits, e)
	return nil
}

// Bytes applies the planned edits to the source and checks that the
// result parses.
func (f *File) Bytes() ([]byte, error) {
	edits := slices.Clone(f.edits)
	// By start, insertions before a replacement that starts there.
	slices.SortStableFunc(edits, func(a, b edit) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return a.end - b.end
	})
	var out bytes.Buffer
	at := 0
	for _, e := range edits {
		out.Write(f.src[at:e.start])
		out.WriteString(e.text)
		at = e.end
	}
	out.Write(f.src[at:])
	if _, err := parser.ParseFile(f.Name, out.Bytes(), parser.ParseComments); err != nil {
		return nil, fmt.Errorf("editing %s made it invalid: %w", f.Name, err)
	}
	return out.Bytes(), nil
}

// WriteFile writes b to name atomically: a temporary file beside it,
// with name's permissions when it exists, renamed over it.
func WriteFile(name string, b []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(name); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// LineStart returns the offset of the start of the line holding offset.
func (f *File) LineStart(offset int) int {
	return bytes.LastIndexByte(f.src[:offset], '\n') + 1
}

// Indent returns the whitespace that starts the line holding offset.
func (f *File) Indent(offset int) string {
	start := f.LineStart(offset)
	end := start
	for end < len(f.src) && (f.src[end] == '\t' || f.src[end] == ' ') {
		end++
	}
	return string(f.src[start:end])
}
