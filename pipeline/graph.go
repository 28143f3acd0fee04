package pipeline

import (
	"encoding/json"
	"fmt"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/store"
)

// StoreGraph is g as the store sees it: the derivations by hash, and
// where each is written (its CUE path and file:line:col) for build errors.
func StoreGraph(g *eval.Graph) *store.Graph {
	sg := &store.Graph{
		Derivations: make(map[store.DrvHash]*store.Derivation, len(g.Nodes)),
		Origins:     make(map[store.DrvHash]store.Origin, len(g.Nodes)),
	}
	for h, n := range g.Nodes {
		sg.Derivations[h] = n.Drv
		sg.Origins[h] = store.Origin{Attr: n.Attr, Pos: n.Pos}
		if n.Limits != (store.Limits{}) {
			if sg.Limits == nil {
				sg.Limits = make(map[store.DrvHash]store.Limits)
			}
			sg.Limits[h] = n.Limits
		}
	}
	return sg
}

// RootHashes are g's roots in the order of their CUE paths, each once
// (two paths may name one derivation).
func RootHashes(g *eval.Graph) []store.DrvHash {
	var hs []store.DrvHash
	seen := make(map[store.DrvHash]bool)
	for _, attr := range g.RootNames() {
		h := g.Roots[attr]
		if !seen[h] {
			seen[h] = true
			hs = append(hs, h)
		}
	}
	return hs
}

// SizeLimits returns the policy rules that Evaluate kept with g to be
// checked once images are built (policy.CheckSizes); none when g was
// evaluated without policies.
func SizeLimits(g *eval.Graph) ([]policy.SizeLimit, error) {
	if len(g.Deferred) == 0 {
		return nil, nil
	}
	var ls []policy.SizeLimit
	if err := json.Unmarshal(g.Deferred, &ls); err != nil {
		return nil, fmt.Errorf("reading the policy's size limits: %w", err)
	}
	return ls, nil
}
