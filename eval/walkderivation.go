package eval

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/store"
)

// derivation visits the derivation v defined at attr and returns its hash.
func (w *walker) derivation(v cue.Value, attr string) (store.DrvHash, bool) {
	if vis := w.memo[attr]; vis != nil {
		switch vis.state {
		case done:
			return vis.hash, true
		case visiting:
			w.cycle(attr)
		}
		return store.DrvHash{}, false
	}
	vis := &visit{state: visiting}
	w.memo[attr] = vis
	f := &frame{attr: attr, name: attr}
	w.stack = append(w.stack, f)
	defer func() { w.stack = w.stack[:len(w.stack)-1] }()

	w.g.Decoded++
	d, meta, ok := w.decode(v, attr)
	lim, lok := w.limits(v, attr)
	ok = ok && lok
	f.name = d.Name
	if ok && !w.checkDerivedAttrs(v, attr, d) {
		ok = false
	}
	if !w.inputs(v, attr, d, f) {
		ok = false
	}
	if ok {
		for _, err := range d.Validate() {
			w.fail(fieldError(v, attr, err))
			ok = false
		}
	}
	var h store.DrvHash
	if ok {
		var err error
		if h, err = d.Hash(); err != nil {
			w.fail(errorf(v, attr, "%v", err))
			ok = false
		}
	}
	if !ok {
		vis.state = failed
		return store.DrvHash{}, false
	}
	vis.state, vis.hash = done, h
	if n, dup := w.g.Nodes[h]; dup {
		if err := sameDerivation(n, d, meta); err != nil {
			w.fail(errorf(v, attr, "%v", err))
			vis.state = failed
			return store.DrvHash{}, false
		}
		if betterAttr(attr, n.Attr) {
			n.Attr, n.Pos, n.value = attr, posOf(userPos(v)), v
		}
	} else {
		w.g.Nodes[h] = &Node{Hash: h, Drv: d, Meta: meta, Limits: lim, Attr: attr, Pos: posOf(userPos(v)), value: v}
	}
	return h, true
}

// fieldError places a problem Validate found at the field it is about.
func fieldError(v cue.Value, attr string, err error) *Error {
	fe, ok := err.(*store.FieldError)
	if !ok {
		return errorf(v, attr, "%v", err)
	}
	sels := make([]cue.Selector, len(fe.Path))
	for i, p := range fe.Path {
		if n, err := strconv.Atoi(p); err == nil && i > 0 {
			sels[i] = cue.Index(n)
		} else {
			sels[i] = cue.Str(p)
		}
	}
	at := v
	if f := v.LookupPath(cue.MakePath(sels...)); f.Exists() {
		at = f
	}
	return errorf(at, attr+"."+store.FormatFieldPath(fe.Path), "%s", fe.Msg)
}

// sameDerivation checks that d, found elsewhere with the same hash as n,
// is really the same: a #GoModule's h1: sum pins one module at one
// version, so two modules of one name and sum that fetch different
// things mean a wrong pin; and two places may not give one derivation
// different meta (a policy would see only one of them).
func sameDerivation(n *Node, d *store.Derivation, meta Meta) error {
	if d.IsFixedOutput() && d.Builder == builtins.FetchGoMod {
		a, _ := store.AppendCanonicalJSON(nil, n.Drv.Attrs)
		b, _ := store.AppendCanonicalJSON(nil, d.Attrs)
		if string(a) != string(b) {
			return fmt.Errorf("same name and sum %s as %s, but it fetches %s where %s fetches %s: an h1: sum pins one module version, so one of the pins is wrong", d.OutputHash, n.Attr, b, n.Attr, a)
		}
	}
	if !reflect.DeepEqual(n.Meta, meta) {
		return fmt.Errorf("the same derivation as %s (same hash) with different meta; give both the same meta, or make them different derivations", n.Attr)
	}
	return nil
}

// inputs follows v's inputs into d.Inputs.
func (w *walker) inputs(v cue.Value, attr string, d *store.Derivation, f *frame) bool {
	in := v.LookupPath(inputsPath)
	if !in.Exists() {
		return true
	}
	it, err := fields(in)
	if err != nil {
		w.fail(cueErr(err))
		return false
	}
	ok := true
	// resolved follows one input whose reference is already resolved (to
	// tv at target); one resolves it first.
	resolved := func(name string, iv, tv cue.Value, target, iattr string) {
		f.edge, f.edgeAttr = iv, iattr
		if !isDerivation(tv) {
			if err := tv.Err(); err != nil {
				// Not a derivation because it is an error (a reference to
				// a field that is not there): the error is the cause.
				w.failIn(tv, target, err)
				ok = false
				return
			}
			hint := "want a reference to a derivation, or a list or struct of them"
			if tv.IncompleteKind() == cue.TopKind {
				hint = selfRefHint
			}
			w.fail(errorf(iv, iattr, "input %s is not a derivation (%s)", name, hint))
			ok = false
			return
		}
		h, good := w.derivation(tv, target)
		if !good {
			ok = false
			return
		}
		d.Inputs[name] = h
	}
	// one follows a member of a list or struct input: iattr is where the
	// input names it, at where it is defined (below the container a
	// reference led to), which keys its visit.
	one := func(name string, iv cue.Value, iattr, at string) {
		tv, target := w.resolve(iv, at)
		resolved(name, iv, tv, target, iattr)
	}
	for it.Next() {
		if !regular(it.Selector()) {
			continue
		}
		name := it.Selector().Unquoted()
		iattr := attr + ".inputs." + it.Selector().String()
		iv := it.Value()
		tv, target := w.resolve(iv, iattr)
		switch {
		case isDerivation(tv):
			resolved(name, iv, tv, target, iattr)
		case tv.IncompleteKind() == cue.ListKind:
			lit, err := tv.List()
			if err != nil {
				w.fail(cueErr(err))
				ok = false
				continue
			}
			for i := 0; lit.Next(); i++ {
				idx := "[" + strconv.Itoa(i) + "]"
				one(name+"."+strconv.Itoa(i), lit.Value(), iattr+idx, target+idx)
			}
		case tv.IncompleteKind() == cue.StructKind || tv.Err() != nil && holdsDerivations(tv, 3):
			// A struct or list of derivations CUE marks as an error (a
			// field of one of them is wrong, or they refer to each other)
			// is followed all the same, as collect does: its derivations
			// say what is wrong, where. (Any other error is the cause.)
			sit, err := fields(tv)
			if err != nil {
				w.fail(cueErr(err))
				ok = false
				continue
			}
			for sit.Next() {
				switch sel := sit.Selector(); {
				case sel.LabelType() == cue.IndexLabel: // a list CUE marks as an error
					i := strconv.Itoa(sel.Index())
					one(name+"."+i, sit.Value(), iattr+"["+i+"]", target+"["+i+"]")
				case regular(sel):
					one(name+"."+sel.Unquoted(), sit.Value(), iattr+"."+sel.String(), target+"."+sel.String())
				}
			}
		default:
			resolved(name, iv, tv, target, iattr)
		}
	}
	f.edge, f.edgeAttr = cue.Value{}, ""
	return ok
}

// cycle reports the dependency cycle that ends by reaching attr again.
func (w *walker) cycle(attr string) {
	start := len(w.stack) - 1
	for start > 0 && w.stack[start].attr != attr {
		start--
	}
	cyc := w.stack[start:]
	names := make([]string, 0, len(cyc)+1)
	var edges []string
	var pos []token.Pos
	for _, f := range cyc {
		names = append(names, f.name)
		edges = append(edges, f.edgeAttr)
		pos = append(pos, userPos(f.edge))
	}
	names = append(names, cyc[0].name)
	w.fail(&Error{
		Pos:     pos[0],
		Related: pos[1:],
		Attr:    cyc[0].attr,
		Text:    fmt.Sprintf("dependency cycle: %s (via %s)", strings.Join(names, " -> "), strings.Join(edges, ", ")),
	})
}

// betterAttr reports whether a names a derivation better than b: a path
// without hidden fields, then the shorter, then the first in order.
func betterAttr(a, b string) bool {
	ha, hb := strings.Contains("."+a, "._"), strings.Contains("."+b, "._")
	if ha != hb {
		return hb
	}
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
