package store

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	"hephc.dev/hephc/srcpos"
)

// Graph is what the store realizes: derivations by hash, and for each
// where it was written (for messages), as evaluation found them.
type Graph struct {
	Derivations map[DrvHash]*Derivation
	Origins     map[DrvHash]Origin
	// Limits are the derivations' own limits (#Limits), where they give
	// any: beside the derivation, never in its hash.
	Limits map[DrvHash]Limits
}

// Limits bound one build; a zero field is the default's.
type Limits struct {
	Memory, Pids, Tmp, Disk int64
	Timeout                 time.Duration
}

// Origin says where a derivation is written: its CUE path and position.
type Origin struct {
	Attr string
	Pos  srcpos.Pos
}

// Describe names h for people: attr (pos) or its store path.
func (g *Graph) Describe(h DrvHash) string {
	o := g.Origins[h]
	d := g.Derivations[h]
	name := h.String()
	if d != nil {
		name = Path{Hash: h, Name: d.Name}.String()
	}
	switch {
	case o.Attr != "" && o.Pos.IsValid():
		return fmt.Sprintf("%s (%s, %s)", name, o.Attr, o.Pos)
	case o.Attr != "":
		return fmt.Sprintf("%s (%s)", name, o.Attr)
	}
	return name
}

// PathOf returns the store path of h.
func (g *Graph) PathOf(h DrvHash) Path { return Path{Hash: h, Name: g.Derivations[h].Name} }

// Closure returns roots and every derivation they depend on, in
// dependency order (inputs before what uses them), ties broken by hash.
func (g *Graph) Closure(roots ...DrvHash) ([]DrvHash, error) {
	state := make(map[DrvHash]int) // 1 visiting, 2 done
	var order []DrvHash
	var visit func(h DrvHash) error
	visit = func(h DrvHash) error {
		switch state[h] {
		case 1:
			return fmt.Errorf("dependency cycle through %s", g.Describe(h))
		case 2:
			return nil
		}
		d, ok := g.Derivations[h]
		if !ok {
			return fmt.Errorf("derivation %s is not in the graph", h)
		}
		state[h] = 1
		for _, name := range d.InputNames() {
			if err := visit(d.Inputs[name]); err != nil {
				return err
			}
		}
		state[h] = 2
		order = append(order, h)
		return nil
	}
	sorted := append([]DrvHash(nil), roots...)
	sort.Slice(sorted, func(i, j int) bool { return bytes.Compare(sorted[i][:], sorted[j][:]) < 0 })
	for _, h := range sorted {
		if _, ok := g.Derivations[h]; !ok {
			return nil, fmt.Errorf("derivation %s is not in the graph", h)
		}
		if err := visit(h); err != nil {
			return nil, err
		}
	}
	return order, nil
}
