package gendiff

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/store"
)

// whyWalker finds the fields behind a changed hash, memoized per pair of
// derivations so that a graph of any shape costs each pair once.
type whyWalker struct {
	a, b *Side
	memo map[[2]store.DrvHash][]*Reason
}

// why returns one reason per edit that made ha's hash become hb's: the
// fields of the derivation itself (those derived from others folded into
// the field written) and, through inputs paired by identity, the edits
// behind each changed input.
func (w *whyWalker) why(ha, hb store.DrvHash) []*Reason {
	pair := [2]store.DrvHash{ha, hb}
	if r, ok := w.memo[pair]; ok {
		return r
	}
	w.memo[pair] = nil // a cycle cannot happen; this also stops one
	da, db := w.a.Graph.Derivations[ha], w.b.Graph.Derivations[hb]
	own := foldOwn(da, db, ownReasons(w.b.key(hb), da, db))
	var via []*Reason
	if !(da.IsFixedOutput() && db.IsFixedOutput()) {
		// A pinned source's identity is its pin: its inputs do not
		// change its output.
		for _, p := range pairInputs(w.a, w.b, da.Inputs, db.Inputs) {
			switch {
			case p.a == "":
				own = append(own, newReason(w.b.key(hb), inputField(p.b), nil, w.b.key(db.Inputs[p.b]), false))
			case p.b == "":
				own = append(own, newReason(w.b.key(hb), inputField(p.a), w.a.key(da.Inputs[p.a]), nil, false))
			default:
				for _, r := range w.why(da.Inputs[p.a], db.Inputs[p.b]) {
					c := *r
					c.Via = append([]string{inputField(p.b)}, r.Via...)
					via = append(via, &c)
				}
			}
		}
	}
	// A field of this derivation that changed exactly as one of an input
	// did (version: inputs.src.version) is that input's edit.
	own = slices.DeleteFunc(own, func(r *Reason) bool {
		return slices.ContainsFunc(via, func(v *Reason) bool { return v.Old == r.Old && v.New == r.New })
	})
	rs := dedupeReasons(append(own, via...))
	if len(rs) == 0 {
		rs = w.reordered(w.b.key(hb), da.Inputs, db.Inputs)
	}
	w.memo[pair] = rs
	return rs
}

// reordered names the lists of inputs whose elements are the same but in
// another order: what changed a hash when nothing else did.
func (w *whyWalker) reordered(attr string, ia, ib map[string]store.DrvHash) []*Reason {
	order := func(s *Side, m map[string]store.DrvHash) map[string][]any {
		out := map[string][]any{}
		names := slices.Sorted(maps.Keys(m))
		slices.SortStableFunc(names, compareIndex)
		for _, n := range names {
			out[listName(n)] = append(out[listName(n)], s.key(m[n]))
		}
		return out
	}
	oa, ob := order(w.a, ia), order(w.b, ib)
	var rs []*Reason
	for _, l := range unionKeys(oa, ob) {
		if !slices.Equal(oa[l], ob[l]) {
			rs = append(rs, newReason(attr, "inputs."+l, oa[l], ob[l], false))
		}
	}
	return rs
}

// ownReasons lists the fields of the derivation itself that differ
// (inputs aside), attrs diffed per key. An attr a built-in builder makes
// from a field of its definition is named as that field.
func ownReasons(attr string, da, db *store.Derivation) []*Reason {
	var rs []*Reason
	// The derivation's own strings (name, version, args, env) are
	// written as they are; attrs as CUE writes values.
	plain := func(field string, old, new any) { rs = append(rs, newReason(attr, field, old, new, false)) }
	quoted := func(field string, old, new any) { rs = append(rs, newReason(attr, field, old, new, true)) }
	str := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	for _, f := range []struct{ name, old, new string }{
		{"name", da.Name, db.Name}, {"version", da.Version, db.Version}, {"system", da.System, db.System},
		{"builder", da.Builder, db.Builder}, {"outputHash", da.OutputHash, db.OutputHash},
	} {
		if f.old != f.new {
			plain(f.name, str(f.old), str(f.new))
		}
	}
	diffList("args", toAny(da.Args), toAny(db.Args), plain)
	for _, k := range unionKeys(da.Env, db.Env) {
		if da.Env[k] != db.Env[k] {
			plain("env"+selector(k), str(da.Env[k]), str(db.Env[k]))
		}
	}
	written := map[string]string{}
	if b, ok := builtins.Lookup(db.Builder); ok {
		for _, x := range b.Derived {
			written[x.Attr] = x.Field
		}
	}
	for _, k := range unionKeys(da.Attrs, db.Attrs) {
		field := "attrs" + selector(k)
		if f, ok := written[k]; ok {
			field = f
		}
		x, inA := da.Attrs[k]
		y, inB := db.Attrs[k]
		diffValue(field, x, y, inA, inB, quoted)
	}
	return rs
}

// newReason is a reason at attr whose values are old and new (nil when
// absent), written as CUE writes them when quote, else strings as they
// are.
func newReason(attr, field string, old, new any, quote bool) *Reason {
	return &Reason{Attr: attr, Field: field, Old: text(old, quote), New: text(new, quote), OldValue: old, NewValue: new}
}

// text is how a person reads v: "" for nothing, a string as it is unless
// quote, anything else as CUE writes it.
func text(v any, quote bool) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok && !quote {
		return s
	}
	return formatValue(v)
}

// foldOwn folds the fields that follow from others into them: the same
// change named twice (a builder's attr and the field it is made from), a
// name that is the other changes applied to the old name (#GoModule's
// name is its path and version), and a pinned source's new pin when
// anything else about it changed (the pin follows from what is fetched).
func foldOwn(da, db *store.Derivation, rs []*Reason) []*Reason {
	rs = dedupeReasons(rs)
	others := slices.DeleteFunc(slices.Clone(rs), func(r *Reason) bool { return r.Field == "name" || r.Field == "outputHash" })
	return slices.DeleteFunc(rs, func(r *Reason) bool {
		switch r.Field {
		case "name":
			return len(others) > 0 && derivedName(r.Old, r.New, others)
		case "outputHash":
			return da.IsFixedOutput() && db.IsFixedOutput() && len(others) > 0
		}
		return false
	})
}

// derivedName reports whether replacing each other change's old value by
// its new one in old (as is, or as a name spells it: / and ~ as -) gives
// new.
func derivedName(old, new string, others []*Reason) bool {
	spell := strings.NewReplacer("/", "-", "~", "-")
	for _, r := range others {
		o, _ := r.OldValue.(string)
		n, _ := r.NewValue.(string)
		if o == "" || n == "" {
			continue
		}
		if strings.Contains(old, o) {
			old = strings.ReplaceAll(old, o, n)
		} else if so := spell.Replace(o); strings.Contains(old, so) {
			old = strings.ReplaceAll(old, so, spell.Replace(n))
		}
	}
	return old == new
}

// dedupeReasons keeps one reason per field (the one reached through the
// shortest chain of inputs): a change reached along several paths is one
// cause.
func dedupeReasons(rs []*Reason) []*Reason {
	best := make(map[[2]string]int, len(rs))
	var out []*Reason
	for _, r := range rs {
		k := [2]string{r.Attr, r.Field}
		if i, ok := best[k]; ok {
			if len(r.Via) < len(out[i].Via) {
				out[i] = r
			}
			continue
		}
		best[k] = len(out)
		out = append(out, r)
	}
	return out
}

// inputPair is an input of the old derivation (a) and the new one (b)
// that are the same input; a or b is "" for an input removed or added.
type inputPair struct{ a, b string }

// pairInputs pairs the inputs of two derivations. Inputs are paired by
// name, except the elements of a list (NAME.0, NAME.1, …, as eval names
// them): those are paired by identity — the same derivation, else the
// same CUE path, else the same module or name — so that inserting one
// element is one change, not one per element after it. Unchanged pairs
// are left out.
func pairInputs(a, b *Side, ia, ib map[string]store.DrvHash) []inputPair {
	var out []inputPair
	groups := func(m map[string]store.DrvHash) map[string][]string {
		g := map[string][]string{}
		for _, n := range slices.Sorted(maps.Keys(m)) {
			g[listName(n)] = append(g[listName(n)], n)
		}
		return g
	}
	ga, gb := groups(ia), groups(ib)
	for _, g := range unionKeys(ga, gb) {
		na, nb := ga[g], gb[g]
		if len(na) == 1 && len(nb) == 1 && na[0] == nb[0] && na[0] == g {
			if ia[g] != ib[g] {
				out = append(out, inputPair{g, g})
			}
			continue
		}
		slices.SortFunc(na, compareIndex)
		slices.SortFunc(nb, compareIndex)
		for _, ident := range []func(s *Side, h store.DrvHash) string{
			func(_ *Side, h store.DrvHash) string { return h.String() },
			func(s *Side, h store.DrvHash) string { return s.key(h) },
			func(s *Side, h store.DrvHash) string { return identity(s.Graph.Derivations[h]) },
		} {
			var rest []string
			for _, x := range na {
				i := slices.IndexFunc(nb, func(y string) bool { return ident(a, ia[x]) == ident(b, ib[y]) })
				if i < 0 {
					rest = append(rest, x)
					continue
				}
				if ia[x] != ib[nb[i]] {
					out = append(out, inputPair{x, nb[i]})
				}
				nb = slices.Delete(nb, i, i+1)
			}
			na = rest
		}
		// What is left is paired in order; the surplus was added or
		// removed.
		for i := range max(len(na), len(nb)) {
			var p inputPair
			if i < len(na) {
				p.a = na[i]
			}
			if i < len(nb) {
				p.b = nb[i]
			}
			out = append(out, p)
		}
	}
	return out
}

// listName returns the list an input named NAME.N belongs to (NAME), else
// the input's own name.
func listName(n string) string {
	i := strings.LastIndexByte(n, '.')
	if i < 0 {
		return n
	}
	if _, err := strconv.Atoi(n[i+1:]); err != nil {
		return n
	}
	return n[:i]
}

// inputField is the input named n as a CUE path below the derivation:
// inputs.deps[2] for the element eval names deps.2.
func inputField(n string) string {
	if l := listName(n); l != n {
		return "inputs." + l + "[" + n[len(l)+1:] + "]"
	}
	return "inputs." + n
}

// compareIndex orders the elements of one list by index.
func compareIndex(x, y string) int {
	xi, _ := strconv.Atoi(x[strings.LastIndexByte(x, '.')+1:])
	yi, _ := strconv.Atoi(y[strings.LastIndexByte(y, '.')+1:])
	return xi - yi
}

// identity is what stays the same across versions of a derivation: a
// module's path (a built-in fetcher's "module" attr), else its name.
func identity(d *store.Derivation) string {
	if m, ok := d.Attrs["module"].(string); ok {
		return "module " + m
	}
	return "name " + d.Name
}
