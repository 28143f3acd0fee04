// Package gendiff says what changed between two generations (or any two
// derivation graphs with their roots) and why: packages added, removed and
// changed, the closure's size before and after, each change traced through
// inputs to the fields that caused it, and the services of each image. It
// knows the schema only through the builtins table (which builder's attrs
// carry services) and #Image's field name for its initramfs. It never
// imports CUE, eval, lang or policy: positions for the reasons are the
// caller's to find.
package gendiff

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/store"
)

// Side is one side of a diff: a derivation graph, the roots it was
// realized for (by CUE path), and the output sizes of the paths that are
// valid.
type Side struct {
	Graph *store.Graph
	Roots map[string]store.DrvHash
	Sizes map[store.Path]int64
}

// Diff is what changed between two sides.
type Diff struct {
	Added   []*PackageChange `json:"added"`
	Removed []*PackageChange `json:"removed"`
	// Changed holds packages whose version changed, and those whose version
	// is the same but whose hash changed (Rebuilt).
	Changed    []*PackageChange `json:"changed"`
	SizeBefore int64            `json:"sizeBefore"`
	SizeAfter  int64            `json:"sizeAfter"`
	Services   []*ServiceChange `json:"services"`
}

// PackageChange is one package (a derivation, by the CUE path it is
// written at) that was added, removed or changed.
type PackageChange struct {
	Key        string     `json:"key"`
	Name       string     `json:"name"`
	OldVersion string     `json:"oldVersion,omitempty"`
	NewVersion string     `json:"newVersion,omitempty"`
	OldPath    store.Path `json:"-"`
	NewPath    store.Path `json:"-"`
	OldSize    int64      `json:"oldSize,omitempty"`
	NewSize    int64      `json:"newSize,omitempty"`
	Fixed      bool       `json:"fixed,omitempty"` // a pinned source
	// Why lists the fields whose change made the hash change, traced
	// through inputs to where they are written.
	Why []*Reason `json:"why,omitempty"`
}

// Rebuilt reports whether the package kept its version but changed hash.
func (c *PackageChange) Rebuilt() bool { return c.OldVersion == c.NewVersion }

// Reason is one field that differs: in the derivation at Attr, Field
// went from Old to New. Via is the chain of inputs from the package to
// that derivation.
type Reason struct {
	Attr  string   `json:"attr"`
	Field string   `json:"field"`
	Old   string   `json:"old"`
	New   string   `json:"new"`
	Via   []string `json:"via,omitempty"`
	// Pos is where the field is written, when known (set by the caller).
	Pos string `json:"pos,omitempty"`
}

// ServiceChange is a service of an image added, removed or changed.
type ServiceChange struct {
	Image   string `json:"image"`
	Service string `json:"service"`
	Old     string `json:"old"` // canonical JSON of the service, "" when absent
	New     string `json:"new"`
}

// key names a derivation across generations: the CUE path it is written
// at, else its name.
func (s *Side) key(h store.DrvHash) string {
	if a := s.Graph.Origins[h].Attr; a != "" {
		return a
	}
	return s.Graph.Derivations[h].Name
}

// closure maps the keys of every derivation reachable from the roots.
func (s *Side) closure() (map[string]store.DrvHash, error) {
	hs, err := s.Graph.Closure(slices.Collect(maps.Values(s.Roots))...)
	if err != nil {
		return nil, err
	}
	m := make(map[string]store.DrvHash, len(hs))
	for _, h := range hs {
		m[s.key(h)] = h
	}
	return m, nil
}

// Compare says what changed from a to b.
func Compare(a, b *Side) (*Diff, error) {
	ca, err := a.closure()
	if err != nil {
		return nil, err
	}
	cb, err := b.closure()
	if err != nil {
		return nil, err
	}
	d := &Diff{}
	for _, h := range ca {
		d.SizeBefore += a.Sizes[a.Graph.PathOf(h)]
	}
	for _, h := range cb {
		d.SizeAfter += b.Sizes[b.Graph.PathOf(h)]
	}
	w := &whyWalker{a: a, b: b, memo: map[[2]store.DrvHash][]*Reason{}}
	for k, hb := range cb {
		db := b.Graph.Derivations[hb]
		pc := &PackageChange{Key: k, Name: db.Name, NewVersion: db.Version, NewPath: b.Graph.PathOf(hb), NewSize: b.Sizes[b.Graph.PathOf(hb)], Fixed: db.IsFixedOutput()}
		ha, ok := ca[k]
		if !ok {
			d.Added = append(d.Added, pc)
			continue
		}
		if ha == hb {
			continue
		}
		da := a.Graph.Derivations[ha]
		pc.OldVersion, pc.OldPath, pc.OldSize = da.Version, a.Graph.PathOf(ha), a.Sizes[a.Graph.PathOf(ha)]
		pc.Why = w.why(ha, hb)
		d.Changed = append(d.Changed, pc)
	}
	for k, ha := range ca {
		if _, ok := cb[k]; !ok {
			da := a.Graph.Derivations[ha]
			d.Removed = append(d.Removed, &PackageChange{Key: k, Name: da.Name, OldVersion: da.Version, OldPath: a.Graph.PathOf(ha), OldSize: a.Sizes[a.Graph.PathOf(ha)], Fixed: da.IsFixedOutput()})
		}
	}
	for _, l := range [][]*PackageChange{d.Added, d.Removed, d.Changed} {
		slices.SortFunc(l, func(x, y *PackageChange) int { return strings.Compare(x.Key, y.Key) })
	}
	d.Services = diffServices(a, b, ca, cb)
	return d, nil
}

// whyWalker finds the fields behind a changed hash, memoized per pair of
// derivations so that a graph of any shape costs each pair once.
type whyWalker struct {
	a, b *Side
	memo map[[2]store.DrvHash][]*Reason
}

func (w *whyWalker) why(ha, hb store.DrvHash) []*Reason {
	pair := [2]store.DrvHash{ha, hb}
	if r, ok := w.memo[pair]; ok {
		return r
	}
	w.memo[pair] = nil // a cycle cannot happen; this also stops one
	da, db := w.a.Graph.Derivations[ha], w.b.Graph.Derivations[hb]
	attr := w.b.key(hb)
	var rs []*Reason
	add := func(field, old, new string) {
		rs = append(rs, &Reason{Attr: attr, Field: field, Old: old, New: new})
	}
	if da.IsFixedOutput() && db.IsFixedOutput() {
		// A pinned source: its identity is its name and pin.
		if da.OutputHash != db.OutputHash {
			add("outputHash", da.OutputHash, db.OutputHash)
		}
		if da.Name != db.Name {
			add("name", da.Name, db.Name)
		}
		diffMaps("attrs", da.Attrs, db.Attrs, add)
		w.memo[pair] = rs
		return rs
	}
	for _, f := range []struct{ name, old, new string }{
		{"name", da.Name, db.Name}, {"version", da.Version, db.Version}, {"system", da.System, db.System},
		{"builder", da.Builder, db.Builder}, {"outputHash", da.OutputHash, db.OutputHash},
	} {
		if f.old != f.new {
			add(f.name, f.old, f.new)
		}
	}
	diffLists("args", da.Args, db.Args, add)
	diffStringMaps("env", da.Env, db.Env, add)
	diffMaps("attrs", da.Attrs, db.Attrs, add)
	for _, n := range unionKeys(da.Inputs, db.Inputs) {
		ia, okA := da.Inputs[n]
		ib, okB := db.Inputs[n]
		switch {
		case okA && okB && ia == ib:
		case !okA:
			add("inputs."+n, "", w.b.key(ib))
		case !okB:
			add("inputs."+n, w.a.key(ia), "")
		default:
			for _, r := range w.why(ia, ib) {
				c := *r
				c.Via = append([]string{"inputs." + n}, r.Via...)
				rs = append(rs, &c)
			}
		}
	}
	rs = dedupeReasons(rs)
	w.memo[pair] = rs
	return rs
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

func diffLists(field string, a, b []string, add func(field, old, new string)) {
	n := max(len(a), len(b))
	for i := 0; i < n; i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y || (i >= len(a)) != (i >= len(b)) {
			add(field+"["+strconv.Itoa(i)+"]", x, y)
		}
	}
}

// unionKeys returns the keys of a and b, sorted, each once.
func unionKeys[V any](a, b map[string]V) []string {
	return slices.Compact(slices.Sorted(func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if !yield(k) {
				return
			}
		}
	}))
}

func diffStringMaps(field string, a, b map[string]string, add func(field, old, new string)) {
	for _, k := range unionKeys(a, b) {
		if a[k] != b[k] {
			add(field+"."+k, a[k], b[k])
		}
	}
}

func diffMaps(field string, a, b map[string]any, add func(field, old, new string)) {
	for _, k := range unionKeys(a, b) {
		x, _ := store.AppendCanonicalJSON(nil, a[k])
		y, _ := store.AppendCanonicalJSON(nil, b[k])
		if _, ok := a[k]; !ok {
			x = nil
		}
		if _, ok := b[k]; !ok {
			y = nil
		}
		if string(x) != string(y) {
			add(field+"."+k, string(x), string(y))
		}
	}
}

// initramfsField is the field of #Image (defs/) that holds its initramfs:
// an initramfs written at IMAGE.initramfs is image IMAGE's.
const initramfsField = "initramfs"

// servicesAttr is the attr of a built-in builder (builtins.Derived) that
// holds an initramfs's services.
const servicesAttr = "services"

// services returns the services of h, by name, when its builder is a
// built-in one whose attrs carry services (#Initramfs's).
func services(d *store.Derivation) (map[string]any, bool) {
	b, ok := builtins.Lookup(d.Builder)
	if !ok || !slices.ContainsFunc(b.Derived, func(x builtins.Derived) bool { return x.Attr == servicesAttr }) {
		return nil, false
	}
	m, ok := d.Attrs[servicesAttr].(map[string]any)
	return m, ok
}

// diffServices compares the services of the initramfs builds on both
// sides, by image and service name.
func diffServices(a, b *Side, ca, cb map[string]store.DrvHash) []*ServiceChange {
	collect := func(s *Side, c map[string]store.DrvHash) map[[2]string]string {
		out := map[[2]string]string{}
		for k, h := range c {
			m, ok := services(s.Graph.Derivations[h])
			if !ok {
				continue
			}
			image := strings.TrimSuffix(k, "."+initramfsField)
			for name, svc := range m {
				j, _ := store.AppendCanonicalJSON(nil, svc)
				out[[2]string{image, name}] = string(j)
			}
		}
		return out
	}
	sa, sb := collect(a, ca), collect(b, cb)
	var out []*ServiceChange
	for _, k := range slices.Compact(slices.SortedFunc(func(yield func([2]string) bool) {
		for k := range sa {
			if !yield(k) {
				return
			}
		}
		for k := range sb {
			if !yield(k) {
				return
			}
		}
	}, func(x, y [2]string) int { return cmp.Or(strings.Compare(x[0], y[0]), strings.Compare(x[1], y[1])) })) {
		if sa[k] != sb[k] {
			out = append(out, &ServiceChange{Image: k[0], Service: k[1], Old: sa[k], New: sb[k]})
		}
	}
	return out
}

// FromStore makes a side from what st recorded: the graph of the
// derivations that built roots (and all their inputs), with where each was
// last written, and the sizes of the outputs that are valid.
func FromStore(ctx context.Context, st *store.Store, roots map[string]store.Path) (*Side, error) {
	side := &Side{Roots: map[string]store.DrvHash{}, Sizes: map[store.Path]int64{}}
	var derivers []store.DrvHash
	for _, attr := range slices.Sorted(maps.Keys(roots)) {
		p := roots[attr]
		info, ok, err := st.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s (%s) is not valid", p, attr)
		}
		side.Roots[attr] = info.Deriver
		derivers = append(derivers, info.Deriver)
	}
	g, err := st.LoadGraph(ctx, derivers...)
	if err != nil {
		// Which root it is, for the message.
		for i, attr := range slices.Sorted(maps.Keys(roots)) {
			if _, rerr := st.LoadGraph(ctx, derivers[i]); rerr != nil {
				return nil, fmt.Errorf("%s (%s): %w", roots[attr], attr, rerr)
			}
		}
		return nil, err
	}
	side.Graph = g
	for h, d := range g.Derivations {
		p := store.Path{Hash: h, Name: d.Name}
		if info, ok, err := st.QueryPathInfo(ctx, p); err == nil && ok {
			side.Sizes[p] = info.Size
		}
	}
	return side, nil
}
