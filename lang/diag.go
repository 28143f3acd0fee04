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
	// The same message at the same place is one diagnostic, under the
	// shortest path (an error in a field the schema copies elsewhere, such
	// as #Image's initramfs into inputs.initrd, is reported once).
	var out Diagnostics
	at := make(map[string]int)
	for _, d := range ds {
		key := fmt.Sprintf("%s:%d:%d\x00%s", d.File, d.Line, d.Col, d.Msg)
		if i, ok := at[key]; ok && d.File != "" {
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

// Diagnose turns a CUE error (possibly a list) into sorted Diagnostics whose
// positions are relative to the loader's working directory.
func (l *Loader) Diagnose(err error) Diagnostics {
	return DiagnoseIn(l.Cwd, err)
}

// DiagnoseIn is Diagnose for a given working directory.
func DiagnoseIn(cwd string, err error) Diagnostics {
	var ds Diagnostics
	for _, p := range Explain(err) {
		ds = append(ds, p.diagnostic(cwd))
	}
	if len(ds) == 0 && err != nil {
		ds = append(ds, Diagnostic{Msg: err.Error()})
	}
	return ds.Sort()
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
	var ps []Problem
	for _, e := range errors.Errors(err) {
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
	p := Problem{Msg: humanize(msg), Path: formatPath(e.Path()), Own: e.Position()}
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
		q := user[primary]
		d.File, d.Line, d.Col = RelPath(cwd, q.Filename()), q.Line(), q.Column()
		for i, q := range user {
			if i != primary {
				d.Related = append(d.Related, FormatPos(cwd, q))
			}
		}
	} else if len(schema) > 0 {
		q := schema[0]
		d.File, d.Line, d.Col = FormatSchemaFile(q.Filename()), q.Line(), q.Column()
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
