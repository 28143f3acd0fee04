package eval

import (
	"strconv"
	"strings"

	"cuelang.org/go/cue"

	"hephc.dev/hephc/store"
)

// coreFields are the fields of #Derivation that make up a derivation. Other
// fields of a derivation (a #GoProgram's module, an #Image's kernel) only
// feed these and are checked shallowly.
var coreFields = map[string]bool{
	"name": true, "version": true, "system": true, "builder": true,
	"args": true, "env": true, "attrs": true, "outputHash": true,
	"meta": true, "inputs": true,
}

// decode reads the derivation v (at attr) except its inputs. It reports
// every problem it finds and returns ok=false if there was one.
func (w *walker) decode(v cue.Value, attr string) (d *store.Derivation, meta Meta, ok bool) {
	d = &store.Derivation{Env: map[string]string{}, Inputs: map[string]store.DrvHash{}, Attrs: map[string]any{}, Args: []string{}}
	ok = true
	it, err := fields(v)
	if err != nil {
		w.fail(cueErr(err))
		return d, meta, false
	}
	for it.Next() {
		if !regular(it.Selector()) {
			continue
		}
		name := it.Selector().String()
		f, _ := it.Value().Default()
		if name == "inputs" {
			continue
		}
		if !coreFields[name] {
			// A helper field such as #GoModule's sum; only its own
			// error counts: derivations in it are visited via inputs.
			if err := f.Err(); err != nil && !isCycle(err) {
				w.fail(cueErr(err))
				ok = false
			}
			continue
		}
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
		w.fail(errorf(v, attr, "derivation has no name"))
		ok = false
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
