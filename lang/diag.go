package lang

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/defs"
)

// Diagnostic is one error about the configuration, at a position.
type Diagnostic struct {
	// File is relative to the loader's working directory when it is below
	// it; "" when the error has no position.
	File      string
	Line, Col int
	// Path is the CUE path of the offending value, e.g. packages.age.sum.
	Path string
	Msg  string
	// Related are further positions (e.g. the schema constraint), rendered
	// as file:line:col.
	Related []string
}

func (d Diagnostic) String() string {
	var b strings.Builder
	if d.File != "" {
		fmt.Fprintf(&b, "%s:%d:%d: ", d.File, d.Line, d.Col)
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	for _, r := range d.Related {
		b.WriteString("\n\t")
		b.WriteString(r)
	}
	return b.String()
}

// Diagnostics is a sorted list of diagnostics; it is an error.
type Diagnostics []Diagnostic

func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Sort orders diagnostics by file, line, column, path and message, and
// merges those that say the same thing at the same place (their related
// positions are joined).
func (ds Diagnostics) Sort() Diagnostics {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Msg < b.Msg
	})
	out := ds[:0]
	for _, d := range ds {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.File == d.File && last.Line == d.Line && last.Col == d.Col && last.Path == d.Path && last.Msg == d.Msg {
				last.Related = mergeSorted(last.Related, d.Related)
				continue
			}
		}
		out = append(out, d)
	}
	return out
}

func mergeSorted(a, b []string) []string {
	seen := make(map[string]bool)
	var out []string
	for _, s := range append(append([]string(nil), a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// Diagnose turns a CUE error (possibly a list) into sorted Diagnostics whose
// positions are relative to the loader's working directory.
func (l *Loader) Diagnose(err error) Diagnostics {
	return DiagnoseIn(l.Cwd, err)
}

// DiagnoseIn is Diagnose for a given working directory.
func DiagnoseIn(cwd string, err error) Diagnostics {
	var ds Diagnostics
	for _, e := range errors.Errors(err) {
		ds = append(ds, diagnostic(cwd, e))
	}
	if len(ds) == 0 && err != nil {
		ds = append(ds, Diagnostic{Msg: err.Error()})
	}
	return ds.Sort()
}

func diagnostic(cwd string, e errors.Error) Diagnostic {
	format, args := e.Msg()
	d := Diagnostic{
		Msg:  humanize(fmt.Sprintf(format, args...)),
		Path: strings.Join(e.Path(), "."),
	}
	// The primary position is the first in the user's files; the schema's
	// positions are related information.
	var user, schema []token.Pos
	seen := make(map[string]bool)
	for _, p := range allPositions(e) {
		if !p.IsValid() {
			continue
		}
		key := p.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		if defs.IsSchemaFile(p.Filename()) {
			schema = append(schema, p)
		} else {
			user = append(user, p)
		}
	}
	sortPos(user)
	sortPos(schema)
	if len(user) > 0 {
		p := user[0]
		d.File, d.Line, d.Col = RelPath(cwd, p.Filename()), p.Line(), p.Column()
		for _, q := range user[1:] {
			d.Related = append(d.Related, FormatPos(cwd, q))
		}
	} else if len(schema) > 0 {
		p := schema[0]
		d.File, d.Line, d.Col = FormatSchemaFile(p.Filename()), p.Line(), p.Column()
		schema = schema[1:]
	}
	for _, q := range schema {
		d.Related = append(d.Related, "schema: "+FormatPos(cwd, q))
	}
	return d
}

func allPositions(e errors.Error) []token.Pos {
	ps := []token.Pos{e.Position()}
	ps = append(ps, e.InputPositions()...)
	return ps
}

func sortPos(ps []token.Pos) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Filename() != b.Filename() {
			return a.Filename() < b.Filename()
		}
		if a.Line() != b.Line() {
			return a.Line() < b.Line()
		}
		return a.Column() < b.Column()
	})
}

// FormatSchemaFile names a schema file independently of where the user's
// configuration lives: hephc.dev/heph/sources.cue.
func FormatSchemaFile(filename string) string {
	return defs.ImportPath + "/" + filepath.Base(filename)
}

// FormatPos renders p as file:line:col, relative to cwd.
func FormatPos(cwd string, p token.Pos) string {
	f := p.Filename()
	if defs.IsSchemaFile(f) {
		f = FormatSchemaFile(f)
	} else {
		f = RelPath(cwd, f)
	}
	return fmt.Sprintf("%s:%d:%d", f, p.Line(), p.Column())
}

// RelPath returns path relative to cwd when it lies below cwd.
func RelPath(cwd, path string) string {
	if path == "" || !filepath.IsAbs(path) {
		return path
	}
	rel, err := filepath.Rel(cwd, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return path
	}
	return rel
}
