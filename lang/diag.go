package lang

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/srcpos"
)

// Diagnostic is one error about the configuration, at a position: what
// Report prints.
type Diagnostic struct {
	// Pos is the error's position, its file relative to the working
	// directory when it lies below it and a schema file named
	// hephc.dev/heph/FILE.cue; the zero Pos when the error has none.
	Pos srcpos.Pos
	// Path is the CUE path of the offending value, e.g. packages.age.sum.
	Path string
	Msg  string
	// Related are further positions (e.g. the schema constraint), each a
	// line: file:line:col, said the same way as Pos, with what is there
	// ("schema: hephc.dev/heph/base.cue:3:9", "policy.cue:4:2: rule
	// licenses.allow").
	Related []string
}

// String renders d: "file:line:col: path: message" ("hephc: " for the
// position when d has none), then each related position on a line of its
// own, indented by a tab.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.Pos.IsValid() {
		b.WriteString(d.Pos.String())
		b.WriteString(": ")
	} else {
		b.WriteString("hephc: ")
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
		if c := a.Pos.Compare(b.Pos); c != 0 {
			return c < 0
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Msg < b.Msg
	})
	// The same message at the same place is one diagnostic, under the
	// shortest path (an error in a field the schema copies elsewhere, such
	// as #Image's initramfs into inputs.initrd, is reported once).
	var out Diagnostics
	at := make(map[string]int)
	for _, d := range ds {
		key := d.Pos.String() + "\x00" + d.Msg
		if i, ok := at[key]; ok && d.Pos.IsValid() {
			o := &out[i]
			if len(d.Path) < len(o.Path) {
				o.Path = d.Path
			}
			o.Related = mergeRelated(o.Related, d.Related)
			continue
		}
		at[key] = len(out)
		out = append(out, d)
	}
	return out
}

func mergeRelated(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Problem is one CUE error said plainly: the path of the offending value,
// the message, and every position the error involves.
type Problem struct {
	Path string
	Msg  string
	// Own is the error's own position (invalid when it has none);
	// Positions are all its positions, Own included, without repeats.
	Own       token.Pos
	Positions []token.Pos
}

// Explain turns a CUE error (possibly a list) into problems: messages in
// plain words, a value that matches none of a disjunction's alternatives
// one problem.
func Explain(err error) []Problem {
	return explainErrors(errors.Errors(err))
}

func explainErrors(errs []errors.Error) []Problem {
	var ps []Problem
	for _, e := range errs {
		ps = append(ps, explain(e))
	}
	return groupDisjunctions(ps)
}

func explain(e errors.Error) Problem {
	format, args := e.Msg()
	msg := fmt.Sprintf(format, args...)
	// Some errors (a failed import) keep their cause in a wrapped error.
	if u, ok := errors.Unwrap(e).(errors.Error); ok {
		uf, ua := u.Msg()
		msg += ": " + fmt.Sprintf(uf, ua...)
	} else if msg == "" {
		msg = e.Error() // e.g. a file that cannot be read
	}
	p := Problem{Msg: humanize(msg) + didYouMean(e), Path: formatPath(e.Path()), Own: e.Position()}
	if strings.HasPrefix(msg, "import failed") {
		p.Path = "" // the path CUE gives is the importing module's
	}
	p.addPositions(allPositions(e))
	return p
}

func (p *Problem) addPositions(ps []token.Pos) {
	for _, q := range ps {
		if q.IsValid() && !slices.ContainsFunc(p.Positions, func(r token.Pos) bool { return r.String() == q.String() }) {
			p.Positions = append(p.Positions, q)
		}
	}
}

// diagnostic places p at a position in the user's files: the error's own
// when it is there, else the last of its input positions there (the
// value written after `heph.#X &` rather than the reference to the
// schema). The schema's positions are related information.
func (p Problem) diagnostic(cwd string) Diagnostic {
	d := Diagnostic{Msg: p.Msg, Path: p.Path}
	var user, schema []token.Pos
	for _, q := range p.Positions {
		if defs.IsSchemaFile(q.Filename()) {
			schema = append(schema, q)
		} else {
			user = append(user, q)
		}
	}
	sortPos(user)
	sortPos(schema)
	if len(user) > 0 {
		primary := len(user) - 1
		if o := p.Own; o.IsValid() && !defs.IsSchemaFile(o.Filename()) {
			primary = slices.IndexFunc(user, func(q token.Pos) bool { return q.String() == o.String() })
		}
		d.Pos = SourcePos(user[primary]).RelTo(cwd)
		for i, q := range user {
			if i != primary {
				d.Related = append(d.Related, FormatPos(cwd, q))
			}
		}
	} else if len(schema) > 0 {
		d.Pos = schemaPos(schema[0])
		schema = schema[1:]
	}
	for _, q := range schema {
		d.Related = append(d.Related, "schema: "+FormatPos(cwd, q))
	}
	return d
}

// formatPath joins a CUE error path, writing list indices as [i].
func formatPath(elems []string) string {
	var b strings.Builder
	for _, e := range elems {
		if e != "" && strings.Trim(e, "0123456789") == "" {
			fmt.Fprintf(&b, "[%s]", e)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(e)
	}
	return b.String()
}

var (
	emptyDisjunction = regexp.MustCompile(`^\d+ errors in empty disjunction:?$`)
	conflicting      = regexp.MustCompile(`^conflicting values (.+) and (.+?)(?: \(mismatched types .*\))?$`)
)

// groupDisjunctions turns CUE's report of a value that matches none of a
// disjunction's alternatives ("3 errors in empty disjunction", then one
// "conflicting values" per alternative) into one diagnostic: invalid value
// V (want A, B or C).
func groupDisjunctions(ds []Problem) []Problem {
	type group struct {
		idx  []int
		vals [][2]string
	}
	groups := make(map[string]*group)
	var order []string
	// A value without a path (one made to be checked on its own) has
	// one disjunction at most: its conflicts are grouped too.
	pathless := slices.ContainsFunc(ds, func(d Problem) bool { return d.Path == "" && emptyDisjunction.MatchString(d.Msg) })
	var out []Problem
	for i, d := range ds {
		if emptyDisjunction.MatchString(d.Msg) {
			continue
		}
		if m := conflicting.FindStringSubmatch(d.Msg); m != nil && (d.Path != "" || pathless) {
			g := groups[d.Path]
			if g == nil {
				g = &group{}
				groups[d.Path] = g
				order = append(order, d.Path)
			}
			g.idx = append(g.idx, i)
			g.vals = append(g.vals, [2]string{m[1], m[2]})
			continue
		}
		out = append(out, d)
	}
	for _, path := range order {
		g := groups[path]
		if len(g.idx) == 1 {
			out = append(out, ds[g.idx[0]])
			continue
		}
		// The user's value is the one every conflict names.
		var value string
		for _, cand := range g.vals[0] {
			all := true
			for _, v := range g.vals[1:] {
				if v[0] != cand && v[1] != cand {
					all = false
				}
			}
			if all {
				value = cand
			}
		}
		if value == "" {
			for _, i := range g.idx {
				out = append(out, ds[i])
			}
			continue
		}
		var alts []string
		d := ds[g.idx[0]]
		for k, v := range g.vals {
			alt := v[1]
			if alt == value {
				alt = v[0]
			}
			if !slices.Contains(alts, alt) {
				alts = append(alts, alt)
			}
			d.addPositions(ds[g.idx[k]].Positions)
		}
		d.Msg = fmt.Sprintf("invalid value %s (want %s)", value, orList(alts))
		out = append(out, d)
	}
	return out
}

func orList(alts []string) string {
	if len(alts) == 1 {
		return alts[0]
	}
	return strings.Join(alts[:len(alts)-1], ", ") + " or " + alts[len(alts)-1]
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

// FormatPos renders p as file:line:col, relative to cwd, a schema file
// named as FormatSchemaFile names it.
func FormatPos(cwd string, p token.Pos) string {
	return displayPos(cwd, p).String()
}

// displayPos returns p as people read it: its file relative to cwd, a
// schema file named as FormatSchemaFile names it.
func displayPos(cwd string, p token.Pos) srcpos.Pos {
	if defs.IsSchemaFile(p.Filename()) {
		return schemaPos(p)
	}
	return SourcePos(p).RelTo(cwd)
}

// schemaPos returns p, a position in the schema, with its file named as
// FormatSchemaFile names it.
func schemaPos(p token.Pos) srcpos.Pos {
	q := SourcePos(p)
	q.File = FormatSchemaFile(q.File)
	return q
}

// JSONDiagnostic is a diagnostic as data, for a command's --json output:
// the position's file (relative to the working directory, a schema file
// named hephc.dev/heph/FILE.cue), line and column, absent when it has
// none; the CUE path of the offending value; the message; the related
// positions as Diagnostic.String says them.
type JSONDiagnostic struct {
	File    string   `json:"file,omitempty"`
	Line    int      `json:"line,omitempty"`
	Column  int      `json:"column,omitempty"`
	Path    string   `json:"path,omitempty"`
	Message string   `json:"message"`
	Related []string `json:"related,omitempty"`
}

// JSON returns the diagnostics as data, never nil.
func (ds Diagnostics) JSON() []JSONDiagnostic {
	out := make([]JSONDiagnostic, 0, len(ds))
	for _, d := range ds {
		out = append(out, JSONDiagnostic{File: d.Pos.File, Line: d.Pos.Line, Column: d.Pos.Col, Path: d.Path, Message: d.Msg, Related: d.Related})
	}
	return out
}
