package trust

import (
	"fmt"
	"slices"
	"time"
)

// Judgement is what policies decide of one candidate on the envelopes
// there are of it.
type Judgement struct {
	// Decisions are each policy's, in the order of the policies.
	Decisions []*Decision
	// Counted are the envelopes one of whose valid signatures is of the
	// candidate's subject: those worth keeping beside the path.
	Counted [][]byte
	// Notes say why other signatures and envelopes did not count.
	Notes []string
}

// Admitted reports whether every policy admits the candidate.
func (j *Judgement) Admitted() bool {
	for _, d := range j.Decisions {
		if !d.Admitted() {
			return false
		}
	}
	return true
}

// Violations returns every policy's violations, in order.
func (j *Judgement) Violations() []*Violation {
	var out []*Violation
	for _, d := range j.Decisions {
		out = append(out, d.Violations...)
	}
	return out
}

// Judge verifies each envelope of envs with the keys of every policy of
// ps and evaluates c under each policy on the attestations found (Admit).
// An envelope that is malformed, or a signature that is unknown or bad,
// counts for nothing and is noted, never an error: what one offers must
// not stop the rest from counting. Each violation's NotCounted says why
// attestations there are did not count.
func Judge(ps []*Policy, c Candidate, envs [][]byte, now time.Time) *Judgement {
	keys := Keys{}
	for _, p := range ps {
		for id, k := range p.Keys() {
			keys[id] = k
		}
	}
	j := &Judgement{}
	var atts []Attestation
	for _, env := range envs {
		v, err := VerifyEnvelope(env, keys)
		if err != nil {
			j.Notes = append(j.Notes, fmt.Sprintf("envelope %s: %v", EnvelopeDigest(env), err))
			continue
		}
		for _, p := range v.Problems {
			j.Notes = append(j.Notes, p.String())
		}
		if len(v.Attestations) > 0 && v.Attestations[0].Subject.Equal(c.Subject) {
			j.Counted = append(j.Counted, env)
		}
		atts = append(atts, v.Attestations...)
	}
	j.Decisions = Admit(ps, c, atts, now)
	for _, d := range j.Decisions {
		for _, v := range d.Violations {
			v.NotCounted = append(slices.Clone(d.Ignored), j.Notes...)
		}
	}
	return j
}
