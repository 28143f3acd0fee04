package eval

import (
	"strconv"
	"strings"
	"time"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/errors"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/store"
)

// Defaults of #Derivation's optional fields.
const (
	DefaultSystem  = "x86_64-linux"
	DefaultChannel = "stable"
)

// coreFields are the fields of #Derivation that make up a derivation, in
// the order decode reads them. Other fields of a derivation (a #GoModule's
// sum, an #Image's cmdline) only feed these.
var coreFields = []string{"name", "version", "system", "builder", "args", "env", "attrs", "outputHash", "meta"}

var testsPath = cue.MakePath(cue.Str("tests"))

var (
	corePaths = func() []cue.Path {
		ps := make([]cue.Path, len(coreFields))
		for i, f := range coreFields {
			ps[i] = cue.MakePath(cue.Str(f))
		}
		return ps
	}()
	isCore = func() map[string]bool {
		m := map[string]bool{"inputs": true, "limits": true}
		for _, f := range coreFields {
			m[f] = true
		}
		return m
	}()
)

// limits reads v's limits (#Limits), which are not part of the derivation.
func (w *walker) limits(v cue.Value, attr string) (store.Limits, bool) {
	var l store.Limits
	f := v.LookupPath(limitsPath)
	if !f.Exists() {
		return l, true
	}
	fattr := attr + ".limits"
	var raw struct {
		Memory  int64  `json:"memory"`
		Pids    int64  `json:"pids"`
		Tmp     int64  `json:"tmp"`
		Disk    int64  `json:"disk"`
		Timeout string `json:"timeout"`
	}
	if err := f.Validate(cue.Concrete(true)); err != nil {
		w.failIn(v, fattr, err)
		return l, false
	}
	if err := f.Decode(&raw); err != nil {
		w.fail(errorf(f, fattr, "%v", err))
		return l, false
	}
	l = store.Limits{Memory: raw.Memory, Pids: raw.Pids, Tmp: raw.Tmp, Disk: raw.Disk}
	if raw.Timeout != "" {
		t, err := time.ParseDuration(raw.Timeout)
		if err != nil || t <= 0 {
			at := f.LookupPath(cue.MakePath(cue.Str("timeout")))
			w.fail(errorf(at, fattr+".timeout", "%q is not a positive duration (\"90s\", \"45m\", \"2h\")", raw.Timeout))
			return l, false
		}
		l.Timeout = t
	}
	return l, true
}

var limitsPath = cue.MakePath(cue.Str("limits"))

// decode reads the derivation v (at attr) except its inputs. It reports
// every problem it finds and returns ok=false if there was one.
func (w *walker) decode(v cue.Value, attr string) (d *store.Derivation, meta Meta, ok bool) {
	d = &store.Derivation{System: DefaultSystem, Env: map[string]string{}, Inputs: map[string]store.DrvHash{}, Attrs: map[string]any{}, Args: []string{}}
	meta.Channel = DefaultChannel
	ok = true
	type fieldErr struct {
		attr string
		err  error
	}
	var coreErrs []fieldErr
	for i, name := range coreFields {
		f := v.LookupPath(corePaths[i])
		if !f.Exists() {
			continue
		}
		f, _ = f.Default()
		fattr := attr + "." + name
		if err := f.Validate(cue.Concrete(true)); err != nil {
			coreErrs = append(coreErrs, fieldErr{fattr, err})
			ok = false
			continue
		}
		switch name {
		case "name":
			d.Name, _ = f.String()
		case "version":
			d.Version, _ = f.String()
		case "system":
			d.System, _ = f.String()
		case "builder":
			d.Builder, _ = f.String()
		case "outputHash":
			d.OutputHash, _ = f.String()
		case "args":
			if err := f.Decode(&d.Args); err != nil {
				w.fail(errorf(f, fattr, "%v", err))
				ok = false
			}
		case "env":
			if err := f.Decode(&d.Env); err != nil {
				w.fail(errorf(f, fattr, "%v", err))
				ok = false
			}
		case "meta":
			if err := f.Decode(&meta); err != nil {
				w.fail(errorf(f, fattr, "%v", err))
				ok = false
			}
		case "attrs":
			a, good := w.data(f, fattr)
			if m, isMap := a.(map[string]any); good && isMap {
				d.Attrs = m
			} else {
				ok = false
			}
		}
	}
	if t := v.LookupPath(testsPath); ok && (d.Builder == builtins.GoBuild || d.Builder == builtins.SystemToplevel) && t.Exists() {
		if data, good := w.data(t, attr+".tests"); !good {
			ok = false
		} else if b, err := store.AppendCanonicalJSON(nil, stepPositions(t, data)); err != nil {
			w.fail(errorf(t, attr+".tests", "%v", err))
			ok = false
		} else {
			meta.Tests = b
		}
	}
	if d.Name == "" && ok {
		w.fail(errorf(v, attr, "no name given (want a store name, #Name)"))
		ok = false
	}
	if d.Builder == "" && ok {
		w.fail(errorf(v, attr, "no builder given"))
		ok = false
	}
	// The other fields (a #GoModule's sum, an #Image's cmdline) are looked
	// at only when something is wrong: iterating every derivation's fields
	// costs more than the rest of decoding. They are what the user wrote
	// and the core fields are computed from them, so an error in one is
	// reported there, and the same error in the core field it feeds (at the
	// same place, or a missing value) is not repeated.
	if len(coreErrs) == 0 && v.Err() == nil {
		return d, meta, ok
	}
	var helperErrs []fieldErr
	helperAt := make(map[string]bool)
	if it, err := fields(v); err == nil {
		for it.Next() {
			sel := it.Selector()
			f := it.Value()
			if !regular(sel) || isCore[sel.String()] || isDerivation(f) {
				continue
			}
			if err := f.Validate(cue.Concrete(true)); err != nil && !isCycle(err) {
				helperErrs = append(helperErrs, fieldErr{attr + "." + sel.String(), err})
				for _, e := range errors.Errors(err) {
					for _, p := range userPositions(e) {
						helperAt[p] = true
					}
				}
			}
		}
	}
	for _, h := range helperErrs {
		w.failIn(v, h.attr, h.err)
		ok = false
	}
	for _, c := range coreErrs {
		for _, e := range errors.Errors(c.err) {
			derived := len(helperErrs) > 0 && isIncomplete(e)
			for _, p := range userPositions(e) {
				derived = derived || helperAt[p]
			}
			if !derived {
				w.failIn(v, c.attr, e)
			}
		}
	}
	return d, meta, ok
}

// data converts a concrete CUE value to the JSON data model of canonical
// encoding: strings, integers, booleans, null, lists and structs.
func (w *walker) data(v cue.Value, attr string) (any, bool) {
	v, _ = v.Default()
	switch v.Kind() {
	case cue.StringKind:
		s, _ := v.String()
		return s, true
	case cue.IntKind:
		i, err := v.Int64()
		if err != nil {
			w.fail(errorf(v, attr, "integer out of range: %v", err))
			return nil, false
		}
		return i, true
	case cue.BoolKind:
		b, _ := v.Bool()
		return b, true
	case cue.NullKind:
		return nil, true
	case cue.FloatKind, cue.NumberKind:
		w.fail(errorf(v, attr, "%v: a float has no canonical encoding; use an integer or a string", v))
		return nil, false
	case cue.ListKind:
		it, _ := v.List()
		l := []any{}
		ok := true
		for i := 0; it.Next(); i++ {
			e, good := w.data(it.Value(), attr+"["+strconv.Itoa(i)+"]")
			ok = ok && good
			l = append(l, e)
		}
		return l, ok
	case cue.StructKind:
		it, _ := v.Fields()
		m := map[string]any{}
		ok := true
		for it.Next() {
			k := it.Selector().Unquoted()
			e, good := w.data(it.Value(), attr+"."+it.Selector().String())
			ok = ok && good
			m[k] = e
		}
		return m, ok
	}
	w.fail(errorf(v, attr, "unsupported value %v", v))
	return nil, false
}

func isIncomplete(e errors.Error) bool {
	format, _ := e.Msg()
	return strings.HasPrefix(format, "incomplete value")
}

// userPositions returns the positions of e in the user's files.
func userPositions(e errors.Error) []string {
	var ps []string
	for _, p := range append(e.InputPositions(), e.Position()) {
		if p.IsValid() && !defs.IsSchemaFile(p.Filename()) {
			ps = append(ps, p.String())
		}
	}
	return ps
}

func isCycle(err error) bool { return strings.Contains(err.Error(), "structural cycle") }
