package trust

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"hephc.dev/hephc/srcpos"
)

// Policy is a trust policy, free of CUE: the people trusted and their
// keys, the keys revoked, and how many distinct people must have built
// and reproduced each path. policy compiles heph.#TrustPolicy into it. A
// policy without rules asks one person's signature of every path.
type Policy struct {
	// Source names the policy for people: its file, or the store owner's.
	Source  string
	People  []Person
	Revoked []Revocation
	Rules   []Rule
}

// Person is someone whose signatures count, with the keys that sign for
// them. However many of their keys sign, a person counts once.
type Person struct {
	Name string
	Keys []Key
	Pos  srcpos.Pos
}

// Key is one of a person's public keys. From Expires on (when not zero)
// its signatures count for nothing.
type Key struct {
	Public  PublicKey
	Expires time.Time
	Pos     srcpos.Pos
}

// Revocation withdraws a key: its signatures count for nothing, whenever
// they were made.
type Revocation struct {
	Key    KeyID
	Reason string
	Pos    srcpos.Pos
}

// Rule says how many distinct people must have attested the paths it
// applies to: Signatures who built or reproduced it, Builds who built it
// (a provenance of their own build), Reproductions who reproduced it,
// each counted among From (everyone in the policy when empty). Builds and
// Reproductions together say "k built it and k reproduced it" (the
// package server's quorum for stable), which Signatures cannot: a
// reproduction counts as a signature. A rule applies to a path written at one of Groups (an attribute
// path: "base" is base and everything below it) or whose store name
// matches one of Names (path.Match patterns); a rule with neither applies
// to every path.
type Rule struct {
	Groups        []string
	Names         []string
	Signatures    int
	Builds        int
	Reproductions int
	From          []string
	Pos           srcpos.Pos
}

// Check reports whether p is consistent: names unique, every key someone's
// only, every name in a From a person.
func (p *Policy) Check() error {
	people := map[string]bool{}
	owner := map[KeyID]string{}
	for _, pe := range p.People {
		if err := checkKeyName(pe.Name); err != nil {
			return policyErrorf(pe.Pos, "person: %w", err)
		}
		if people[pe.Name] {
			return policyErrorf(pe.Pos, "person %s is listed twice", pe.Name)
		}
		people[pe.Name] = true
		for _, k := range pe.Keys {
			if k.Public.IsZero() {
				return policyErrorf(k.Pos, "person %s: a key without a public key", pe.Name)
			}
			id := k.Public.ID()
			if o, ok := owner[id]; ok {
				return policyErrorf(k.Pos, "key %s is both %s's and %s's: a key belongs to one person", id, o, pe.Name)
			}
			owner[id] = pe.Name
		}
	}
	for _, r := range p.Rules {
		if r.Signatures < 0 || r.Builds < 0 || r.Reproductions < 0 {
			return policyErrorf(r.Pos, "a rule's signatures, builds and reproductions are counts, 0 or more")
		}
		for _, n := range r.From {
			if !people[n] {
				return policyErrorf(r.Pos, "rule from %s: no such person in the policy", n)
			}
		}
		for _, n := range r.Names {
			if _, err := path.Match(n, ""); err != nil {
				return policyErrorf(r.Pos, "rule name pattern %q: %w", n, err)
			}
		}
		pool := len(r.From)
		if pool == 0 {
			pool = len(p.People)
		}
		if need := max(r.Signatures, r.Builds, r.Reproductions); need > pool {
			return policyErrorf(r.Pos, "the rule needs %d people but counts only %d: no path could meet it", need, pool)
		}
	}
	return nil
}

// RelTo makes p's positions and source relative to dir, as messages show
// them.
func (p *Policy) RelTo(dir string) {
	p.Source = srcpos.RelPath(dir, p.Source)
	for i := range p.People {
		pe := &p.People[i]
		pe.Pos = pe.Pos.RelTo(dir)
		for j := range pe.Keys {
			pe.Keys[j].Pos = pe.Keys[j].Pos.RelTo(dir)
		}
	}
	for i := range p.Revoked {
		p.Revoked[i].Pos = p.Revoked[i].Pos.RelTo(dir)
	}
	for i := range p.Rules {
		p.Rules[i].Pos = p.Rules[i].Pos.RelTo(dir)
	}
}

// PolicyError is what is wrong with a policy (Policy.Check), and where.
type PolicyError struct {
	Pos srcpos.Pos
	Msg string
	Err error // what caused it, if anything
}

func (e *PolicyError) Error() string { return e.Pos.String() + ": " + e.Msg }

func (e *PolicyError) Unwrap() error { return e.Err }

func policyErrorf(pos srcpos.Pos, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &PolicyError{Pos: pos, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// Keys returns every key of p, revoked and expired ones too (so that their
// signatures are verified and reported as not counting).
func (p *Policy) Keys() Keys {
	ks := Keys{}
	for _, pe := range p.People {
		for _, k := range pe.Keys {
			ks.Add(k.Public)
		}
	}
	return ks
}

// KeyStatus says whose key id is in p and, when its signatures count for
// nothing at now, why (revoked, expired); known is false for a key p does
// not list.
func (p *Policy) KeyStatus(id KeyID, now time.Time) (person string, known bool, problem string) {
	for _, pe := range p.People {
		for _, k := range pe.Keys {
			if k.Public.ID() != id {
				continue
			}
			for _, r := range p.Revoked {
				if r.Key == id {
					return pe.Name, true, "revoked (" + r.Reason + ")"
				}
			}
			if !k.Expires.IsZero() && !now.Before(k.Expires) {
				return pe.Name, true, "expired on " + k.Expires.UTC().Format(time.RFC3339)
			}
			return pe.Name, true, ""
		}
	}
	return "", false, ""
}

// Candidate is a store path asking to be admitted.
type Candidate struct {
	Subject Subject
	// Attr is the attribute path the configuration writes it at, "" when
	// not known (an archive does not say): then every rule with Groups
	// applies to it.
	Attr string
	// Pinned says the path is a fixed-output path whose content was
	// checked against its pin: it is admitted on the pin alone.
	Pinned bool
}

// Decision is what a policy says of one candidate.
type Decision struct {
	Subject Subject
	Policy  string
	// OnPin says the path was admitted on its pin, without signatures.
	OnPin bool
	// Built and Reproduced are the people whose attestations counted.
	Built, Reproduced []string
	// Ignored says why each other attestation did not count.
	Ignored    []string
	Violations []*Violation
}

// Admitted reports whether the policy holds for the candidate.
func (d *Decision) Admitted() bool { return len(d.Violations) == 0 }

// Violation is a rule that a path does not meet.
type Violation struct {
	Path    string
	Policy  string
	Rule    Rule
	Message string
	// NotCounted says why attestations there are did not count.
	NotCounted []string
}

func (v *Violation) Error() string {
	s := v.Path + ": " + v.Message
	if v.Rule.Pos.IsValid() {
		s += " (rule at " + v.Rule.Pos.String() + ")"
	} else if v.Policy != "" {
		s += " (" + v.Policy + ")"
	}
	if len(v.NotCounted) > 0 {
		s += "; not counted: " + strings.Join(v.NotCounted, "; ")
	}
	return s
}

// Evaluate decides whether c is admitted given the attestations atts
// (verified signatures, of c's subject or not) at time now.
func (p *Policy) Evaluate(c Candidate, atts []Attestation, now time.Time) *Decision {
	d := &Decision{Subject: c.Subject, Policy: p.Source}
	if c.Pinned {
		d.OnPin = true
		return d
	}
	owner := map[KeyID]*Person{}
	key := map[KeyID]*Key{}
	for i := range p.People {
		pe := &p.People[i]
		for j := range pe.Keys {
			id := pe.Keys[j].Public.ID()
			owner[id], key[id] = pe, &pe.Keys[j]
		}
	}
	revoked := map[KeyID]Revocation{}
	for _, r := range p.Revoked {
		revoked[r.Key] = r
	}
	built, ownBuild, reproduced := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, a := range atts {
		pe, ok := owner[a.Key]
		switch {
		case !a.Subject.Equal(c.Subject):
			d.Ignored = append(d.Ignored, fmt.Sprintf("%s by %s is for other bytes (%s)", a.Kind, a.Key, subjectDifference(a.Subject, c.Subject)))
		case !ok:
			d.Ignored = append(d.Ignored, fmt.Sprintf("%s by %s: a key the policy does not know", a.Kind, a.Key))
		case revoked[a.Key].Key != "":
			d.Ignored = append(d.Ignored, fmt.Sprintf("%s by %s's key %s: revoked (%s)", a.Kind, pe.Name, a.Key, revoked[a.Key].Reason))
		case !key[a.Key].Expires.IsZero() && !now.Before(key[a.Key].Expires):
			d.Ignored = append(d.Ignored, fmt.Sprintf("%s by %s's key %s: expired on %s", a.Kind, pe.Name, a.Key, key[a.Key].Expires.UTC().Format(time.RFC3339)))
		default:
			built[pe.Name] = true
			switch a.Kind {
			case Built:
				ownBuild[pe.Name] = true
			case Reproduced:
				reproduced[pe.Name] = true
			}
		}
	}
	d.Built, d.Reproduced = sortedKeys(built), sortedKeys(reproduced)
	name := c.Subject.Path[strings.LastIndexByte(c.Subject.Path, '/')+1:]
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[i+1:]
	}
	rules := p.Rules
	if len(rules) == 0 {
		rules = []Rule{{Signatures: 1}}
	}
	for _, r := range rules {
		if !r.applies(c.Attr, name) {
			continue
		}
		pool := r.From
		if len(pool) == 0 {
			for _, pe := range p.People {
				pool = append(pool, pe.Name)
			}
		}
		if v := count(r.Signatures, "signatures", "built or reproduced it", pool, built); v != "" {
			d.Violations = append(d.Violations, &Violation{Path: c.Subject.Path, Policy: p.Source, Rule: r, Message: v})
		}
		if v := count(r.Builds, "builds", "built it", pool, ownBuild); v != "" {
			d.Violations = append(d.Violations, &Violation{Path: c.Subject.Path, Policy: p.Source, Rule: r, Message: v})
		}
		if v := count(r.Reproductions, "reproductions", "reproduced it", pool, reproduced); v != "" {
			d.Violations = append(d.Violations, &Violation{Path: c.Subject.Path, Policy: p.Source, Rule: r, Message: v})
		}
	}
	return d
}

// count checks that need people of pool are in got; else it says who
// attested and who could still.
func count(need int, what, did string, pool []string, got map[string]bool) string {
	var have, missing []string
	for _, n := range pool {
		if got[n] {
			have = append(have, n)
		} else {
			missing = append(missing, n)
		}
	}
	if len(have) >= need {
		return ""
	}
	who := "nobody"
	if len(have) > 0 {
		who = strings.Join(have, ", ")
	}
	return fmt.Sprintf("%d of %d %s: %s %s; missing any %d of %s", len(have), need, what, who, did, need-len(have), strings.Join(missing, ", "))
}

func (r *Rule) applies(attr, name string) bool {
	if len(r.Groups) == 0 && len(r.Names) == 0 {
		return true
	}
	for _, g := range r.Groups {
		if attr == "" || attr == g || strings.HasPrefix(attr, g+".") {
			return true
		}
	}
	for _, n := range r.Names {
		if ok, _ := path.Match(n, name); ok {
			return true
		}
	}
	return false
}

// subjectDifference names the first field in which a differs from want.
func subjectDifference(a, want Subject) string {
	switch {
	case a.Path != want.Path:
		return "path " + a.Path
	case a.ContentHash != want.ContentHash:
		return "content hash " + a.ContentHash + ", not " + want.ContentHash
	case a.LayerDigest != want.LayerDigest:
		return "layer " + a.LayerDigest + ", not " + want.LayerDigest
	case a.Deriver != want.Deriver:
		return "derivation " + a.Deriver + ", not " + want.Deriver
	case !slices.Equal(a.References, want.References):
		return "other references"
	}
	return "the same"
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Admit evaluates c under every policy of ps (the store owner's and any
// the configuration adds: each must hold, so a configuration can tighten
// the owner's policy, never loosen it) and returns the decisions.
func Admit(ps []*Policy, c Candidate, atts []Attestation, now time.Time) []*Decision {
	out := make([]*Decision, len(ps))
	for i, p := range ps {
		out[i] = p.Evaluate(c, atts, now)
	}
	return out
}
