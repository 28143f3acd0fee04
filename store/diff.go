package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// DiffSide is one side of a diff: a derivation graph, the roots it was
// realized for (by CUE path), and the output sizes of the paths that are
// valid.
type DiffSide struct {
	Graph *Graph
	Roots map[string]DrvHash
	Sizes map[Path]int64
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
	Key        string `json:"key"`
	Name       string `json:"name"`
	OldVersion string `json:"oldVersion,omitempty"`
	NewVersion string `json:"newVersion,omitempty"`
	OldPath    Path   `json:"-"`
	NewPath    Path   `json:"-"`
	OldSize    int64  `json:"oldSize,omitempty"`
	NewSize    int64  `json:"newSize,omitempty"`
	Fixed      bool   `json:"fixed,omitempty"` // a pinned source
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
func (s *DiffSide) key(h DrvHash) string {
	if a := s.Graph.Origins[h].Attr; a != "" {
		return a
	}
	return s.Graph.Derivations[h].Name
}

// closure maps the keys of every derivation reachable from the roots.
func (s *DiffSide) closure() (map[string]DrvHash, error) {
	m := make(map[string]DrvHash, len(s.Graph.Derivations))
	seen := make(map[DrvHash]bool, len(s.Graph.Derivations))
	stack := make([]DrvHash, 0, len(s.Roots))
	for _, h := range s.Roots {
		stack = append(stack, h)
	}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		d, ok := s.Graph.Derivations[h]
		if !ok {
			return nil, fmt.Errorf("derivation %s is not in the graph", h)
		}
		m[s.key(h)] = h
		for _, in := range d.Inputs {
			stack = append(stack, in)
		}
	}
	return m, nil
}

// DiffGraphs compares two sides.
func DiffGraphs(a, b *DiffSide) (*Diff, error) {
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
	w := &whyWalker{a: a, b: b, memo: map[[2]DrvHash][]*Reason{}}
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
		sort.Slice(l, func(i, j int) bool { return l[i].Key < l[j].Key })
	}
	d.Services = diffServices(a, b, ca, cb)
	return d, nil
}

// whyWalker finds the fields behind a changed hash, memoized per pair of
// derivations so that a graph of any shape costs each pair once.
type whyWalker struct {
	a, b *DiffSide
	memo map[[2]DrvHash][]*Reason
}

func (w *whyWalker) why(ha, hb DrvHash) []*Reason {
	pair := [2]DrvHash{ha, hb}
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
	names := map[string]bool{}
	for n := range da.Inputs {
		names[n] = true
	}
	for n := range db.Inputs {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
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

func diffStringMaps(field string, a, b map[string]string, add func(field, old, new string)) {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		if a[k] != b[k] {
			add(field+"."+k, a[k], b[k])
		}
	}
}

func diffMaps(field string, a, b map[string]any, add func(field, old, new string)) {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		x, _ := AppendCanonicalJSON(nil, a[k])
		y, _ := AppendCanonicalJSON(nil, b[k])
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

// diffServices compares attrs.services of the derivations (initramfs
// builds) on both sides, by their key and service name.
func diffServices(a, b *DiffSide, ca, cb map[string]DrvHash) []*ServiceChange {
	services := func(s *DiffSide, c map[string]DrvHash) map[[2]string]string {
		out := map[[2]string]string{}
		for k, h := range c {
			m, ok := s.Graph.Derivations[h].Attrs["services"].(map[string]any)
			if !ok {
				continue
			}
			image := strings.TrimSuffix(k, ".initramfs")
			for name, svc := range m {
				j, _ := AppendCanonicalJSON(nil, svc)
				out[[2]string{image, name}] = string(j)
			}
		}
		return out
	}
	sa, sb := services(a, ca), services(b, cb)
	keys := map[[2]string]bool{}
	for k := range sa {
		keys[k] = true
	}
	for k := range sb {
		keys[k] = true
	}
	var out []*ServiceChange
	for k := range keys {
		if sa[k] != sb[k] {
			out = append(out, &ServiceChange{Image: k[0], Service: k[1], Old: sa[k], New: sb[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Image != out[j].Image {
			return out[i].Image < out[j].Image
		}
		return out[i].Service < out[j].Service
	})
	return out
}

// GraphOf rebuilds, from the derivations the store recorded, the graph
// of the derivations that built roots (and all their inputs), with where
// each was last written. Sizes are those of the valid outputs.
func (s *Store) GraphOf(ctx context.Context, roots map[string]Path) (*DiffSide, error) {
	g := &Graph{Derivations: map[DrvHash]*Derivation{}, Origins: map[DrvHash]Origin{}}
	side := &DiffSide{Graph: g, Roots: map[string]DrvHash{}, Sizes: map[Path]int64{}}
	var load func(h DrvHash) error
	load = func(h DrvHash) error {
		if _, ok := g.Derivations[h]; ok {
			return nil
		}
		sd, ok, err := s.LoadDerivation(ctx, h)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("the store has no record of derivation %s", h)
		}
		g.Derivations[h] = sd.Derivation
		g.Origins[h] = Origin{Attr: sd.Attr, Pos: sd.Pos}
		for _, in := range sd.Derivation.Inputs {
			if err := load(in); err != nil {
				return err
			}
		}
		return nil
	}
	for attr, p := range roots {
		info, ok, err := s.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s (%s) is not valid", p, attr)
		}
		if err := load(info.Deriver); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", p, attr, err)
		}
		side.Roots[attr] = info.Deriver
	}
	for h, d := range g.Derivations {
		p := Path{Hash: h, Name: d.Name}
		if info, ok, err := s.QueryPathInfo(ctx, p); err == nil && ok {
			side.Sizes[p] = info.Size
		}
	}
	return side, nil
}
