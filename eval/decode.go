package eval

import (
	"strconv"
	"strings"

	"cuelang.org/go/cue"

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

var (
	corePaths = func() []cue.Path {
		ps := make([]cue.Path, len(coreFields))
		for i, f := range coreFields {
			ps[i] = cue.MakePath(cue.Str(f))
		}
		return ps
	}()
	isCore = func() map[string]bool {
		m := map[string]bool{"inputs": true}
		for _, f := range coreFields {
			m[f] = true
		}
		return m
	}()
)

// decode reads the derivation v (at attr) except its inputs. It reports
// every problem it finds and returns ok=false if there was one.
func (w *walker) decode(v cue.Value, attr string) (d *store.Derivation, meta Meta, ok bool) {
	d = &store.Derivation{System: DefaultSystem, Env: map[string]string{}, Inputs: map[string]store.DrvHash{}, Attrs: map[string]any{}, Args: []string{}}
	meta.Channel = DefaultChannel
	ok = true
	for i, name := range coreFields {
		f := v.LookupPath(corePaths[i])
		if !f.Exists() {
			continue
		}
		f, _ = f.Default()
		fattr := attr + "." + name
		if err := f.Validate(cue.Concrete(true)); err != nil {
			w.failIn(v, fattr, err)
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
	if d.Name == "" && ok {
		w.fail(errorf(v, attr, "no name given (want a store name, #Name)"))
		ok = false
	}
	if d.Builder == "" && ok {
		w.fail(errorf(v, attr, "no builder given"))
		ok = false
	}
	// The other fields are looked at only when CUE says something is wrong
	// (a field the schema does not allow, a bad pin): iterating every
	// derivation's fields costs more than the rest of decoding.
	if err := v.Err(); err != nil && !isCycle(err) {
		it, ierr := fields(v)
		if ierr != nil {
			w.fail(cueErr(ierr))
			return d, meta, false
		}
		for it.Next() {
			if !regular(it.Selector()) || isCore[it.Selector().String()] {
				continue
			}
			if err := it.Value().Err(); err != nil && !isCycle(err) {
				w.failIn(v, attr+"."+it.Selector().String(), err)
				ok = false
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

func isCycle(err error) bool { return strings.Contains(err.Error(), "structural cycle") }
