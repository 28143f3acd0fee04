package eval

import (
	"reflect"
	"slices"
	"sort"
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
	root := &fastNode{fields: make(map[string]*fastNode)}
	var leaves []*fastNode
	for _, ff := range ffs {
		for _, d := range ff.decls {
			n := root
			for i, l := range d.path {
				c := n.fields[l]
				last := i == len(d.path)-1
				if c == nil {
					c = &fastNode{}
					if !last {
						c.fields = make(map[string]*fastNode)
					}
					n.fields[l] = c
				} else if last || c.decl != nil {
					return nil, false // two values of one field: CUE unifies them
				}
				n = c
			}
			n.decl = d
			n.attr = strings.Join(d.path, ".")
			leaves = append(leaves, n)
		}
	}
	g := &Graph{Nodes: make(map[store.DrvHash]*Node, len(leaves)), Roots: make(map[string]store.DrvHash, len(leaves))}
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
			// What Validate checks (names, placeholders naming inputs,
			// NUL bytes) does not depend on the inputs' hashes: once is
			// enough for a declaration.
			if !d.linked && len(dc.Validate()) > 0 {
				n.state = failed
				return false
			}
			var err error
			if h, err = dc.Hash(); err != nil {
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
	// Visit in the order of the attributes, as a CUE walk would, so that
	// the graph does not depend on the order of the files.
	if at != nil {
		prefix := strings.Join(at, ".")
		var under []*fastNode
		for _, n := range leaves {
			if n.attr == prefix || strings.HasPrefix(n.attr, prefix+".") {
				under = append(under, n)
			}
		}
		if len(under) == 0 {
			return nil, false // not there, or nothing there: CUE says which
		}
		leaves = under
	}
	sort.Slice(leaves, func(i, j int) bool { return leaves[i].attr < leaves[j].attr })
	for _, n := range leaves {
		if !visit(n) {
			return nil, false
		}
		g.Roots[n.attr] = n.hash
	}
	return g, true
}

// derivation is the declaration's derivation with ins, its inputs'
// hashes in the order link visits them.
func (d *fastDecl) derivation(ins []store.DrvHash) store.Derivation {
	dc := d.drv
	dc.Inputs = make(map[string]store.DrvHash, len(ins))
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
