package store

import (
	"slices"
	"sync"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/refscan"
)

// refSearch is one fstree.HashTree's search for references: it gives each
// of HashTree's goroutines a matcher of one scanner and merges what they
// found.
type refSearch struct {
	s  *refscan.Scanner
	mu sync.Mutex
	ms []*refscan.Matcher
}

// NewMatcher implements fstree.Scanner.
func (r *refSearch) NewMatcher() fstree.Matcher {
	m := r.s.NewMatcher()
	r.mu.Lock()
	r.ms = append(r.ms, m)
	r.mu.Unlock()
	return m
}

// found returns the candidates found by every matcher, sorted, each once.
func (r *refSearch) found() []string {
	var out []string
	for _, m := range r.ms {
		out = append(out, m.Found()...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// hashTree hashes the tree at root (fstree.HashTree) and finds, in the
// same pass, which of the candidates it refers to: every path of cands
// whose hash appears in a file's contents, a symlink's target or an
// entry's name. refs are sorted.
func hashTree(root string, cands []Path) (info fstree.TreeInfo, refs []Path, err error) {
	byHash := make(map[string]Path, len(cands))
	hs := make([]string, 0, len(cands))
	for _, c := range cands {
		h := c.Hash.String()
		if _, ok := byHash[h]; !ok {
			byHash[h] = c
			hs = append(hs, h)
		}
	}
	search := &refSearch{s: refscan.New(hs)}
	if info, err = fstree.HashTree(root, fstree.HashOptions{Scan: search}); err != nil {
		return info, nil, err
	}
	for _, h := range search.found() {
		refs = append(refs, byHash[h])
	}
	sortPaths(refs)
	return info, refs, nil
}
