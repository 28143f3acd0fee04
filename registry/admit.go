package registry

import (
	"fmt"
	"slices"
	"strings"

	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// admit judges f, a copy of w's path: its manifest must describe the
// path the graph wants, and every policy must admit it. It returns the
// envelopes that counted, or why the copy is not admitted.
func (s *substitution) admit(f *found, w Want) (counted [][]byte, why string) {
	e := f.entry
	switch {
	case e.Deriver != w.Path.Hash:
		return nil, fmt.Sprintf("its manifest says derivation %s made it, not %s", e.Deriver, w.Path.Hash)
	case e.CA != w.CA && w.CA == "":
		return nil, fmt.Sprintf("its manifest gives the pin %s, but its derivation has none", e.CA)
	case e.CA != w.CA:
		return nil, fmt.Sprintf("its manifest gives the pin %q, its derivation %s", e.CA, w.CA)
	case w.CA != "" && len(e.References) > 0:
		return nil, "a fixed-output path with references"
	case strings.HasPrefix(w.CA, "h1:") && e.GoModule != w.GoModule:
		return nil, fmt.Sprintf("its manifest says module %s, the derivation %s", e.GoModule, w.GoModule)
	case strings.HasPrefix(w.CA, "blake3:") && e.ContentHash.String() != w.CA:
		return nil, fmt.Sprintf("its manifest's content hash %s is not its pin %s", e.ContentHash, w.CA)
	}
	pinned := w.CA != ""
	if !pinned && len(s.opts.OwnerPolicies)+len(s.opts.Policies) == 0 {
		return nil, "no trust policy says whom to trust (the store owner's config.cue has no policy.trust, nor has the configuration)"
	}
	keys := trust.Keys{}
	for _, p := range slices.Concat(s.opts.OwnerPolicies, s.opts.Policies) {
		for id, k := range p.Keys() {
			keys[id] = k
		}
	}
	subject := e.Subject()
	var atts []trust.Attestation
	notes := slices.Clone(f.skipped)
	for _, env := range f.envelopes {
		v, err := trust.VerifyEnvelope(env, keys)
		if err != nil {
			notes = append(notes, fmt.Sprintf("envelope %s: %v", trust.EnvelopeDigest(env), err))
			continue
		}
		for _, p := range v.Problems {
			notes = append(notes, p.String())
		}
		if len(v.Attestations) > 0 && v.Attestations[0].Subject.Equal(subject) {
			counted = append(counted, env)
		}
		atts = append(atts, v.Attestations...)
	}
	c := trust.Candidate{Subject: subject, Pinned: pinned}
	ds := trust.Admit(s.opts.OwnerPolicies, c, atts, s.opts.Now)
	c.Attr = w.Attr
	ds = append(ds, trust.Admit(s.opts.Policies, c, atts, s.opts.Now)...)
	var problems []string
	for _, d := range ds {
		for _, v := range d.Violations {
			v.NotCounted = append(slices.Clone(d.Ignored), notes...)
			problems = append(problems, strings.TrimPrefix(v.Error(), v.Path+": "))
		}
	}
	if len(problems) > 0 {
		return nil, strings.Join(problems, "; ")
	}
	return counted, ""
}

// dropUnreferenced refuses, until none is left, each admitted path one
// of whose references is neither valid nor admitted, and each that
// refers to itself through other paths (which no real store path does):
// a path is installed only after all it refers to.
func (s *substitution) dropUnreferenced(admitted map[store.Path]*offer) {
	for changed := true; changed; {
		changed = false
		for _, p := range sortedPaths(admitted) {
			for _, r := range admitted[p].found.entry.References {
				if r != p && !s.valid[r] && admitted[r] == nil {
					s.refuse(p, fmt.Sprintf("its reference %s is neither in the store nor substituted", r))
					delete(admitted, p)
					changed = true
					break
				}
			}
		}
		for _, p := range inCycles(admitted) {
			s.refuse(p, "it refers to itself through other paths")
			delete(admitted, p)
			changed = true
		}
	}
}

// inCycles returns the admitted paths that refer to themselves through
// other admitted paths, sorted.
func inCycles(admitted map[store.Path]*offer) []store.Path {
	state := map[store.Path]int{} // 1 on the walk's stack, 2 done
	cyclic := map[store.Path]bool{}
	var visit func(p store.Path, stack []store.Path)
	visit = func(p store.Path, stack []store.Path) {
		state[p] = 1
		stack = append(stack, p)
		for _, r := range admitted[p].found.entry.References {
			if r == p || admitted[r] == nil {
				continue
			}
			switch state[r] {
			case 0:
				visit(r, stack)
			case 1:
				for i := len(stack) - 1; i >= 0; i-- {
					cyclic[stack[i]] = true
					if stack[i] == r {
						break
					}
				}
			}
		}
		state[p] = 2
	}
	for _, p := range sortedPaths(admitted) {
		if state[p] == 0 {
			visit(p, nil)
		}
	}
	var out []store.Path
	for _, p := range sortedPaths(admitted) {
		if cyclic[p] {
			out = append(out, p)
		}
	}
	return out
}

func sortedPaths(m map[store.Path]*offer) []store.Path {
	ps := make([]store.Path, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) })
	return ps
}
