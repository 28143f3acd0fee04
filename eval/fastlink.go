package eval

import (
	"reflect"
	"slices"
	"strconv"
	"strings"

	"hephc.dev/hephc/store"
)

// fastNode is a field of the merged configuration: a struct of fields or
// a derivation.
type fastNode struct {
	fields map[string]*fastNode
	decl   *fastDecl
	attr   string
	state  visitState
	hash   store.DrvHash
}

// link merges the files' declarations into one tree (CUE unifies fields of
// one name; the fast path only merges structs), resolves the inputs and
// hashes each derivation after its inputs.
//
// With at, only the derivations at or below the attribute with those
// labels are roots (what they depend on is in the graph all the same).
func link(ffs []*fastFile, at []string) (*Graph, bool) {
	count := 0
	for _, ff := range ffs {
		count += len(ff.decls)
	}
	// The derivations' nodes, in the files' order, side by side: a
	// declaration's inputs are mostly declared near it, so visiting them
	// in this order touches memory that is still in the cache (a sort by
	// attribute made the visit jump across the whole graph).
	leaves := make([]fastNode, count)
	root := &fastNode{fields: make(map[string]*fastNode)}
	k := 0
	for _, ff := range ffs {
		for _, d := range ff.decls {
			n := root
			last := len(d.path) - 1
			for _, l := range d.path[:last] {
				c := n.fields[l]
				if c == nil {
					c = &fastNode{fields: make(map[string]*fastNode)}
					n.fields[l] = c
				} else if c.decl != nil {
					return nil, false // two values of one field: CUE unifies them
				}
				n = c
			}
			if n.fields[d.path[last]] != nil {
				return nil, false
			}
			leaf := &leaves[k]
			k++
			leaf.decl, leaf.attr = d, strings.Join(d.path, ".")
			n.fields[d.path[last]] = leaf
		}
	}
	g := &Graph{Nodes: make(map[store.DrvHash]*Node, count), Roots: make(map[string]store.DrvHash, count)}
	lookup := func(r []string) *fastNode {
		n := root
		for _, l := range r {
			if n.fields == nil {
				return nil
			}
			if n = n.fields[l]; n == nil {
				return nil
			}
		}
		if n.decl == nil {
			return nil
		}
		return n
	}
	var visit func(n *fastNode) bool
	visit = func(n *fastNode) bool {
		switch n.state {
		case done:
			return true
		case visiting, failed:
			return false
		}
		n.state = visiting
		d := n.decl
		ins := make([]store.DrvHash, 0, len(d.inputs))
		for _, in := range d.inputs {
			for _, r := range in.refs {
				t := lookup(r)
				if t == nil || !visit(t) {
					n.state = failed
					return false
				}
				ins = append(ins, t.hash)
			}
		}
		h := d.lastHash
		if !d.linked || !slices.Equal(ins, d.lastIns) {
			dc := d.derivation(ins)
			var err error
			if h, err = fastHash(&dc); err != nil {
				n.state = failed
				return false
			}
			d.linked, d.last, d.lastIns, d.lastHash = true, &dc, ins, h
			d.ff.dirty = true
		} else if d.last == nil { // linked by another process
			dc := d.derivation(ins)
			d.last = &dc
		}
		n.state, n.hash = done, h
		g.Decoded++
		pos := d.pos
		if prev, dup := g.Nodes[h]; dup {
			if !reflect.DeepEqual(prev.Meta, d.meta) {
				n.state = failed
				return false
			}
			if betterAttr(n.attr, prev.Attr) {
				prev.Attr, prev.Pos = n.attr, pos
			}
		} else {
			g.Nodes[h] = &Node{Hash: h, Drv: d.last, Meta: d.meta, Attr: n.attr, Pos: pos}
		}
		return true
	}
	// The graph does not depend on the order of the visits: a node's
	// attribute is the best of its declarations' (betterAttr), and any
	// failure fails the whole.
	prefix := strings.Join(at, ".")
	under := 0
	for i := range leaves {
		n := &leaves[i]
		if at != nil && !isUnder(n.attr, prefix) {
			continue
		}
		under++
		if !visit(n) {
			return nil, false
		}
		g.Roots[n.attr] = n.hash
	}
	if at != nil && under == 0 {
		return nil, false // not there, or nothing there: CUE says which
	}
	return g, true
}

// isUnder says whether attr is prefix or an attribute below it.
func isUnder(attr, prefix string) bool {
	rest, ok := strings.CutPrefix(attr, prefix)
	return ok && (rest == "" || rest[0] == '.')
}

// valid says whether the declaration's derivation passes Validate. What
// Validate checks (names, placeholders naming inputs, NUL bytes) does not
// depend on the inputs' hashes: a declaration is checked once, when it is
// extracted (in parallel, while what it holds is still in the processor's
// cache), not when it is linked.
func (d *fastDecl) valid() bool {
	refs := 0
	for _, in := range d.inputs {
		refs += len(in.refs)
	}
	var zero [8]store.DrvHash
	ins := zero[:]
	if refs > len(zero) {
		ins = make([]store.DrvHash, refs)
	}
	dc := d.derivation(ins[:refs])
	if len(dc.Validate()) > 0 {
		return false
	}
	d.spare = dc.Inputs
	return true
}

// derivation is the declaration's derivation with ins, its inputs'
// hashes in the order link visits them. Its map of inputs is the one valid
// made, the first time (it has every input's name), else a new one.
func (d *fastDecl) derivation(ins []store.DrvHash) store.Derivation {
	dc := d.drv
	if dc.Inputs, d.spare = d.spare, nil; dc.Inputs == nil {
		dc.Inputs = make(map[string]store.DrvHash, len(ins))
	}
	k := 0
	for _, in := range d.inputs {
		for i := range in.refs {
			name := in.label
			switch in.kind {
			case 'l':
				name += "." + strconv.Itoa(i)
			case 's':
				name += "." + in.keys[i]
			}
			dc.Inputs[name] = ins[k]
			k++
		}
	}
	return dc
}

// fastHash is dc.Hash() (store/derivation.go) for a derivation the fast
// path made, without attrs: its canonical encoding written field by field
// in Canonical's order, with AppendCanonicalJSON's spelling of each
// string, instead of through maps sorted for each derivation (the cost of
// hashing again what an edit changed). TestFastHash and the differential
// tests hold it to Hash; anything else is hashed by Hash.
func fastHash(dc *store.Derivation) (store.DrvHash, error) {
	if dc.IsFixedOutput() || len(dc.Attrs) > 0 {
		return dc.Hash()
	}
	if err := store.CheckName(dc.Name); err != nil {
		return dc.Hash() // its error
	}
	b := make([]byte, 0, 512)
	var err error
	str := func(s string) {
		if err == nil {
			b, err = store.AppendCanonicalJSON(b, s)
		}
	}
	b = append(b, `{"args":[`...)
	for i, a := range dc.Args {
		if i > 0 {
			b = append(b, ',')
		}
		str(a)
	}
	b = append(b, `],"attrs":{},"builder":`...)
	str(dc.Builder)
	b = append(b, `,"env":{`...)
	var buf [8]string
	for i, k := range appendSortedKeys(buf[:0], dc.Env) {
		if i > 0 {
			b = append(b, ',')
		}
		str(k)
		b = append(b, ':')
		str(dc.Env[k])
	}
	b = append(b, `},"inputs":{`...)
	for i, k := range appendSortedKeys(buf[:0], dc.Inputs) {
		if i > 0 {
			b = append(b, ',')
		}
		str(k)
		b = append(b, ':')
		str(dc.Inputs[k].String())
	}
	b = append(b, `},"name":`...)
	str(dc.Name)
	b = append(b, `,"system":`...)
	str(dc.System)
	b = append(b, `,"type":"derivation","version":`...)
	str(dc.Version)
	b = append(b, '}')
	if err != nil {
		return dc.Hash() // its error
	}
	return store.HashDerivation(b), nil
}
