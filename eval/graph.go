// Package eval turns an evaluated hephc configuration (a cue.Value) into a
// graph of derivations: it finds every derivation, follows inputs by
// reference (never re-unifying a closure), hashes each derivation's
// canonical encoding and reports cycles and schema violations with
// positions.
package eval

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// Meta describes a derivation for people and policy; it is not hashed.
type Meta struct {
	Description string   `json:"description,omitempty"`
	License     string   `json:"license,omitempty"`
	Homepage    string   `json:"homepage,omitempty"`
	Channel     string   `json:"channel,omitempty"`
	Provides    []string `json:"provides,omitempty"`
	// Tests are a #GoProgram's tests field (#GoTests) as canonical JSON,
	// for the tests hephc makes from it (policy.Tests); never hashed.
	Tests json.RawMessage `json:"-"`
}

// Node is one derivation of the graph.
type Node struct {
	Hash store.DrvHash
	Drv  *store.Derivation
	Meta Meta
	// Limits are the derivation's limits (never in its hash).
	Limits store.Limits
	// Attr is the CUE path the derivation was found at; when several
	// identical derivations are written in several places, the first in
	// sorted order.
	Attr string
	// Pos is where the derivation is written in the user's files.
	Pos srcpos.Pos

	value cue.Value // at Attr; absent in a graph from the cache
}

// PolicyField is the top-level field of a configuration that holds its
// policy (heph.#Policy); Build does not look for derivations in it.
const PolicyField = "policy"

// Value returns the derivation's CUE value (at Attr), or a value that does
// not exist when the graph came from the evaluation cache.
func (n *Node) Value() cue.Value { return n.value }

// posOf returns p as a srcpos.Pos, which (unlike token.Pos) survives the
// evaluation cache; its file is absolute.
func posOf(p token.Pos) srcpos.Pos {
	if !p.IsValid() {
		return srcpos.Pos{}
	}
	return srcpos.Pos{File: p.Filename(), Line: p.Line(), Col: p.Column()}
}

// Path returns the node's store path.
func (n *Node) Path() store.Path { return store.Path{Hash: n.Hash, Name: n.Drv.Name} }

// Graph is a derivation graph: nodes keyed by hash, and the roots the
// walk started from, keyed by their CUE paths.
type Graph struct {
	Nodes map[store.DrvHash]*Node
	Roots map[string]store.DrvHash
	// Decoded counts the derivations Build decoded: one for each place a
	// derivation is defined, however many paths lead to it.
	Decoded int
	// Deferred is kept with the graph in the evaluation cache for whoever
	// evaluated it: checks that can run only once outputs are built (the
	// CLI keeps policy size limits here, as JSON).
	Deferred []byte
}

// SortedNodes returns the nodes in a stable order: by name, then hash.
func (g *Graph) SortedNodes() []*Node {
	ns := make([]*Node, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		ns = append(ns, n)
	}
	slices.SortFunc(ns, func(a, b *Node) int {
		if c := strings.Compare(a.Drv.Name, b.Drv.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Hash.String(), b.Hash.String())
	})
	return ns
}

// RootNames returns the roots' CUE paths, sorted.
func (g *Graph) RootNames() []string {
	names := make([]string, 0, len(g.Roots))
	for k := range g.Roots {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Closure returns the hashes reachable from the given ones (included),
// sorted by their string form.
func (g *Graph) Closure(from ...store.DrvHash) []store.DrvHash {
	seen := make(map[store.DrvHash]bool)
	var stack []store.DrvHash
	stack = append(stack, from...)
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		if n := g.Nodes[h]; n != nil {
			for _, in := range n.Drv.Inputs {
				stack = append(stack, in)
			}
		}
	}
	out := make([]store.DrvHash, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Lookup finds a node by hash string, store path or base name.
func (g *Graph) Lookup(s string) (*Node, bool) {
	if p, err := store.ParsePath(s); err == nil {
		n, ok := g.Nodes[p.Hash]
		return n, ok && n.Drv.Name == p.Name
	}
	if h, err := store.ParseDrvHash(s); err == nil {
		n, ok := g.Nodes[h]
		return n, ok
	}
	return nil, false
}
