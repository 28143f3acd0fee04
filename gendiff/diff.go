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
	"strings"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/store"
)

// Side is one side of a diff: a derivation graph, the roots it was
// realized for (by CUE path), and the output sizes and references of the
// paths that are valid.
type Side struct {
	Graph *store.Graph
	Roots map[string]store.DrvHash
	Sizes map[store.Path]int64
	// Refs holds the references of the valid paths (those of Sizes).
	Refs map[store.Path][]store.Path
	// Top, when set, is the path whose closure is the side's (a
	// generation object, which refers to each root); else the roots'
	// outputs are. Its size and references are in Sizes and Refs.
	Top store.Path
}

// Unknown is a closure size that cannot be told: a path of the closure
// is not valid (a configuration not realized yet).
const Unknown = -1

// Diff is what changed between two sides.
type Diff struct {
	Added   []*PackageChange `json:"added"`
	Removed []*PackageChange `json:"removed"`
	// Changed holds packages whose version changed, and those whose version
	// is the same but whose hash changed (Rebuilt).
	Changed []*PackageChange `json:"changed"`
	// ClosureBefore and ClosureAfter are the sizes of the runtime
	// closures: the roots' outputs and every path they refer to, directly
	// or not. Between two generations, their generation objects' — what
	// a generation's closure size counts (store.ClosureSize of it).
	// Unknown when a path of it is not valid.
	ClosureBefore int64 `json:"closureBefore"`
	ClosureAfter  int64 `json:"closureAfter"`
	// BuildBefore and BuildAfter add the build inputs: the outputs of
	// every derivation the roots were built from (sources, toolchains),
	// those that are valid; Unknown when none is.
	BuildBefore int64            `json:"buildClosureBefore"`
	BuildAfter  int64            `json:"buildClosureAfter"`
	Services    []*ServiceChange `json:"services"`
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
	// OldSize and NewSize are the output's size, Unknown when it is not
	// valid (a configuration not realized).
	OldSize int64 `json:"oldSize,omitempty"`
	NewSize int64 `json:"newSize,omitempty"`
	Fixed   bool  `json:"fixed,omitempty"` // a pinned source
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
	Attr  string `json:"attr"`
	Field string `json:"field"`
	// Old and New are the values as a person reads them: a derivation's
	// own strings (name, version, args, env) as they are, an attr's value
	// as CUE writes it ("/bin/a", {command: "/bin/a"}); "" when absent.
	Old string `json:"old"`
	New string `json:"new"`
	// OldValue and NewValue are the values themselves (absent: omitted).
	OldValue any      `json:"oldValue,omitempty"`
	NewValue any      `json:"newValue,omitempty"`
	Via      []string `json:"via,omitempty"`
	// Pos is where the field is written, when known (set by the caller).
	Pos string `json:"pos,omitempty"`
}

// ServiceChange is a service of an image added or removed (Field is ""),
// or one field of a service that changed (Field is its path below the
// service, e.g. command or args[1]). Old and New are written as CUE
// writes them (strings quoted), "" when absent.
type ServiceChange struct {
	Image    string `json:"image"`
	Service  string `json:"service"`
	Field    string `json:"field,omitempty"`
	Old      string `json:"old"`
	New      string `json:"new"`
	OldValue any    `json:"oldValue,omitempty"` // the values themselves, as Reason's
	NewValue any    `json:"newValue,omitempty"`
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

// size is the size of h's output, or Unknown.
func (s *Side) size(h store.DrvHash) int64 {
	if n, ok := s.Sizes[s.Graph.PathOf(h)]; ok {
		return n
	}
	return Unknown
}

// buildSize is the size of the outputs of c that are valid, Unknown when
// none is.
func (s *Side) buildSize(c map[string]store.DrvHash) int64 {
	total := int64(Unknown)
	for _, h := range c {
		if n := s.size(h); n != Unknown {
			total = max(total, 0) + n
		}
	}
	return total
}

// runtimeSize is the size of the side's runtime closure (Top's when
// withTop, else the roots' outputs'), or Unknown.
func (s *Side) runtimeSize(withTop bool) int64 {
	var stack []store.Path
	if withTop {
		stack = append(stack, s.Top)
	} else {
		for _, h := range s.Roots {
			stack = append(stack, s.Graph.PathOf(h))
		}
	}
	seen := map[store.Path]bool{}
	var total int64
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		size, ok := s.Sizes[p]
		if !ok {
			return Unknown
		}
		total += size
		stack = append(stack, s.Refs[p]...)
	}
	return total
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
	// Empty lists are lists ([] in JSON), not absent.
	d := &Diff{Added: []*PackageChange{}, Removed: []*PackageChange{}, Changed: []*PackageChange{}}
	// Two generations are measured as generations counts them, with their
	// generation objects; a generation and anything else by their roots.
	withTop := a.Top != (store.Path{}) && b.Top != (store.Path{})
	d.ClosureBefore, d.ClosureAfter = a.runtimeSize(withTop), b.runtimeSize(withTop)
	d.BuildBefore, d.BuildAfter = a.buildSize(ca), b.buildSize(cb)
	w := &whyWalker{a: a, b: b, memo: map[[2]store.DrvHash][]*Reason{}}
	for k, hb := range cb {
		db := b.Graph.Derivations[hb]
		pc := &PackageChange{Key: k, Name: db.Name, NewVersion: db.Version, NewPath: b.Graph.PathOf(hb), NewSize: b.size(hb), Fixed: db.IsFixedOutput()}
		ha, ok := ca[k]
		if !ok {
			d.Added = append(d.Added, pc)
			continue
		}
		if ha == hb {
			continue
		}
		da := a.Graph.Derivations[ha]
		pc.OldVersion, pc.OldPath, pc.OldSize = da.Version, a.Graph.PathOf(ha), a.size(ha)
		pc.Why = w.why(ha, hb)
		d.Changed = append(d.Changed, pc)
	}
	for k, ha := range ca {
		if _, ok := cb[k]; !ok {
			da := a.Graph.Derivations[ha]
			d.Removed = append(d.Removed, &PackageChange{Key: k, Name: da.Name, OldVersion: da.Version, OldPath: a.Graph.PathOf(ha), OldSize: a.size(ha), Fixed: da.IsFixedOutput()})
		}
	}
	for _, l := range [][]*PackageChange{d.Added, d.Removed, d.Changed} {
		slices.SortFunc(l, func(x, y *PackageChange) int { return strings.Compare(x.Key, y.Key) })
	}
	d.Services = diffServices(a, b, ca, cb)
	return d, nil
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
// sides, by image and service name, and a service on both sides per
// field.
func diffServices(a, b *Side, ca, cb map[string]store.DrvHash) []*ServiceChange {
	collect := func(s *Side, c map[string]store.DrvHash) map[[2]string]any {
		out := map[[2]string]any{}
		for k, h := range c {
			m, ok := services(s.Graph.Derivations[h])
			if !ok {
				continue
			}
			image := strings.TrimSuffix(k, "."+initramfsField)
			for name, svc := range m {
				out[[2]string{image, name}] = svc
			}
		}
		return out
	}
	sa, sb := collect(a, ca), collect(b, cb)
	out := []*ServiceChange{}
	for _, k := range slices.Compact(slices.SortedFunc(union(sa, sb), func(x, y [2]string) int { return cmp.Or(strings.Compare(x[0], y[0]), strings.Compare(x[1], y[1])) })) {
		x, inA := sa[k]
		y, inB := sb[k]
		if !inA || !inB {
			out = append(out, &ServiceChange{Image: k[0], Service: k[1], Old: text(x, true), New: text(y, true), OldValue: x, NewValue: y})
			continue
		}
		diffValue("", x, y, true, true, func(field string, old, new any) {
			out = append(out, &ServiceChange{Image: k[0], Service: k[1], Field: strings.TrimPrefix(field, "."),
				Old: text(old, true), New: text(new, true), OldValue: old, NewValue: new})
		})
	}
	return out
}

// FromStore makes a side from what st recorded: the graph of the
// derivations that built roots (and all their inputs), with where each was
// last written, and the sizes and references of the outputs that are
// valid.
func FromStore(ctx context.Context, st *store.Store, roots map[string]store.Path) (*Side, error) {
	side := &Side{Roots: map[string]store.DrvHash{}}
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
	for h := range g.Derivations {
		if err := side.Observe(ctx, st, g.PathOf(h)); err != nil {
			return nil, err
		}
	}
	return side, nil
}

// FromGeneration makes a side of a generation: FromStore's of its roots,
// whose closure is that of its generation object top (what the
// generation's closure size counts).
func FromGeneration(ctx context.Context, st *store.Store, top store.Path, roots map[string]store.Path) (*Side, error) {
	side, err := FromStore(ctx, st, roots)
	if err != nil {
		return nil, err
	}
	if err := side.Observe(ctx, st, top); err != nil {
		return nil, err
	}
	side.Top = top
	return side, nil
}

// Observe records the size and references of each of ps that is valid in
// st.
func (s *Side) Observe(ctx context.Context, st *store.Store, ps ...store.Path) error {
	if s.Sizes == nil {
		s.Sizes = map[store.Path]int64{}
	}
	if s.Refs == nil {
		s.Refs = map[store.Path][]store.Path{}
	}
	for _, p := range ps {
		info, ok, err := st.QueryPathInfo(ctx, p)
		if err != nil {
			return err
		}
		if ok {
			s.Sizes[p], s.Refs[p] = info.Size, info.References
		}
	}
	return nil
}
