package lang

import (
	"fmt"

	"cuelang.org/go/cue/errors"
)

// An Exact error is one of hephc's own errors about the configuration
// (a policy violation), said as it is to be printed: Report neither
// rephrases its message nor re-chooses its position, as it does CUE's
// errors (see Explain). Its position is the main one, "hephc" when it
// has none; each of its input positions is a related one, "?" when
// invalid, followed by what Notes says is there.
type Exact interface {
	errors.Error
	// Notes says what is at each of InputPositions, in the same order,
	// e.g. "rule licenses.allow"; "" or a missing note says nothing.
	Notes() []string
}

// A Summarized error is several errors about the configuration, in the
// order they are to be printed, and a closing line that sums them up
// (policy.Violations: "2 violations of policy").
type Summarized interface {
	error
	Errors() []errors.Error
	Summary() string
}

// Report says err the way hephc reports every error, one diagnostic a
// line with its related positions indented below it (see Diagnostic.String),
// files relative to cwd: the text the CLI prints, without a final newline.
func Report(cwd string, err error) string {
	return DiagnoseIn(cwd, err).Error()
}

// DiagnoseIn turns err into the diagnostics Report prints, files relative
// to cwd:
//
//   - a Summarized error (found with errors.As): its errors in their
//     order, then its summary as a diagnostic without a position;
//   - Diagnostics (found with errors.As): as they are;
//   - a CUE error (errors.Error, a list of them; an Exact error is one):
//     each error, CUE's said plainly (Explain), sorted by position and
//     merged where two say the same at the same place;
//   - any other error: its text, without a position.
func DiagnoseIn(cwd string, err error) Diagnostics {
	if err == nil {
		return nil
	}
	var s Summarized
	if errors.As(err, &s) {
		ds := diagnoseErrors(cwd, s.Errors())
		return append(ds, Diagnostic{Msg: s.Summary()})
	}
	var ds Diagnostics
	if errors.As(err, &ds) {
		return ds
	}
	if e, ok := err.(errors.Error); ok {
		ds := diagnoseErrors(cwd, errors.Errors(e))
		if len(ds) == 0 {
			ds = append(ds, Diagnostic{Msg: err.Error()})
		}
		return ds.Sort()
	}
	return Diagnostics{{Msg: err.Error()}}
}

// Diagnose is DiagnoseIn with the loader's working directory.
func (l *Loader) Diagnose(err error) Diagnostics {
	return DiagnoseIn(l.Cwd, err)
}

// diagnoseErrors turns errs into diagnostics in their order, Exact ones as
// they say themselves, CUE's own explained (a disjunction's alternatives
// one diagnostic, after the other errors).
func diagnoseErrors(cwd string, errs []errors.Error) Diagnostics {
	var ds Diagnostics
	var cue []errors.Error
	for _, e := range errs {
		if x, ok := e.(Exact); ok {
			ds = append(ds, exactDiagnostic(cwd, x))
		} else {
			cue = append(cue, e)
		}
	}
	for _, p := range explainErrors(cue) {
		ds = append(ds, p.diagnostic(cwd))
	}
	return ds
}

// exactDiagnostic says e as it is.
func exactDiagnostic(cwd string, e Exact) Diagnostic {
	format, args := e.Msg()
	d := Diagnostic{Pos: displayPos(cwd, e.Position()), Path: formatPath(e.Path()), Msg: fmt.Sprintf(format, args...)}
	notes := e.Notes()
	for i, p := range e.InputPositions() {
		line := "?"
		if p.IsValid() {
			line = FormatPos(cwd, p)
		}
		if i < len(notes) && notes[i] != "" {
			line += ": " + notes[i]
		}
		d.Related = append(d.Related, line)
	}
	return d
}
