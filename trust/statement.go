package trust

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// The formats a statement uses (docs/trust.md, "The statement").
const (
	// StatementType is the in-toto Statement v1 type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// ProvenanceType is SLSA provenance v1: "this key built it from that
	// derivation".
	ProvenanceType = "https://slsa.dev/provenance/v1"
	// ReproductionType is hephc's reproduction predicate: "this key
	// rebuilt that derivation and got the same content".
	ReproductionType = "https://hephc.dev/attestation/reproduction/v1"
	// BuildType is the SLSA buildType of a hephc build: a derivation
	// realized in hephc's sandbox.
	BuildType = "https://hephc.dev/build/v1"
	// TreeDigest is the subject digest algorithm name of a store path's
	// content hash: blake3 over hephc's canonical tree serialization
	// (docs/store.md), which no standard tool computes; sha256 beside it
	// is the path's layer, which any tool can check.
	TreeDigest = "hephcTree"
)

// Kind is what an attestation says of its subject.
type Kind string

// The kinds of attestation.
const (
	Built      Kind = "built"      // SLSA provenance
	Reproduced Kind = "reproduced" // a reproduction
)

// Subject is one store path's exact bytes: what every statement is about.
// Two subjects are the same only if every field is.
type Subject struct {
	// Path is the store path, /heph/store/<hash>-<name>.
	Path string
	// ContentHash is its content hash, blake3:<64 hex digits>.
	ContentHash string
	// LayerDigest is sha256:<64 hex digits> of the path's reproducible
	// layer, uncompressed (its OCI diff ID; package archive).
	LayerDigest string
	// References are the store paths it refers to, sorted.
	References []string
	// Deriver is the hash of the derivation that made it (52 characters).
	Deriver string
}

// Equal reports whether s and t are the same subject.
func (s Subject) Equal(t Subject) bool {
	return s.Path == t.Path && s.ContentHash == t.ContentHash && s.LayerDigest == t.LayerDigest &&
		s.Deriver == t.Deriver && slices.Equal(s.References, t.References)
}

// check reports whether s is well formed.
func (s Subject) check() error {
	if !strings.HasPrefix(s.Path, "/heph/store/") || strings.Count(s.Path, "/") != 3 {
		return fmt.Errorf("subject %q: not a store path /heph/store/<hash>-<name>", s.Path)
	}
	if _, ok := hexDigest(s.ContentHash, "blake3:"); !ok {
		return fmt.Errorf("subject %s: content hash %q is not blake3:<64 hex digits>", s.Path, s.ContentHash)
	}
	if _, ok := hexDigest(s.LayerDigest, "sha256:"); !ok {
		return fmt.Errorf("subject %s: layer digest %q is not sha256:<64 hex digits>", s.Path, s.LayerDigest)
	}
	if s.Deriver == "" {
		return fmt.Errorf("subject %s: no deriver", s.Path)
	}
	if !slices.IsSorted(s.References) {
		return fmt.Errorf("subject %s: references not sorted", s.Path)
	}
	return nil
}

// hexDigest returns the 64 lowercase hex digits after prefix in s.
func hexDigest(s, prefix string) (string, bool) {
	h, ok := strings.CutPrefix(s, prefix)
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return "", false
	}
	_, err := hex.DecodeString(h)
	return h, err == nil
}

// Claim is what one statement says: that its subject was built (or
// rebuilt with the same result) by Builder at Time.
type Claim struct {
	Kind    Kind
	Subject Subject
	// Builder identifies who built it, e.g. hephc@host (free text the
	// signer chose; the signature, not this, says who vouches).
	Builder string
	// Time is when the build finished, as the signer says.
	Time time.Time
}

// The statement as JSON. encoding/json writes struct fields in order and
// map keys sorted, so equal claims give equal bytes.
type statement struct {
	Type          string          `json:"_type"`
	Subject       []descriptor    `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

type descriptor struct {
	Name        string            `json:"name"`
	Digest      map[string]string `json:"digest"`
	Annotations annotations       `json:"annotations"`
}

type annotations struct {
	Deriver    string   `json:"hephc.dev/deriver"`
	References []string `json:"hephc.dev/references"`
}

type provenance struct {
	BuildDefinition struct {
		BuildType          string         `json:"buildType"`
		ExternalParameters map[string]any `json:"externalParameters"`
	} `json:"buildDefinition"`
	RunDetails struct {
		Builder struct {
			ID string `json:"id"`
		} `json:"builder"`
		Metadata struct {
			FinishedOn string `json:"finishedOn"`
		} `json:"metadata"`
	} `json:"runDetails"`
}

type reproduction struct {
	Derivation  string `json:"derivation"`
	ContentHash string `json:"contentHash"`
	Builder     struct {
		ID string `json:"id"`
	} `json:"builder"`
	RebuiltOn string `json:"rebuiltOn"`
}

// MarshalStatement returns the in-toto statement of c.
func MarshalStatement(c *Claim) ([]byte, error) {
	if err := c.Subject.check(); err != nil {
		return nil, err
	}
	if c.Builder == "" {
		return nil, fmt.Errorf("statement for %s: no builder", c.Subject.Path)
	}
	s := c.Subject
	refs := s.References
	if refs == nil {
		refs = []string{}
	}
	when := c.Time.UTC().Format(time.RFC3339)
	st := statement{
		Type: StatementType,
		Subject: []descriptor{{
			Name:        s.Path,
			Digest:      map[string]string{"sha256": strings.TrimPrefix(s.LayerDigest, "sha256:"), TreeDigest: strings.TrimPrefix(s.ContentHash, "blake3:")},
			Annotations: annotations{Deriver: s.Deriver, References: refs},
		}},
	}
	var pred any
	switch c.Kind {
	case Built:
		var p provenance
		p.BuildDefinition.BuildType = BuildType
		p.BuildDefinition.ExternalParameters = map[string]any{"derivation": s.Deriver, "storePath": s.Path}
		p.RunDetails.Builder.ID = c.Builder
		p.RunDetails.Metadata.FinishedOn = when
		st.PredicateType, pred = ProvenanceType, &p
	case Reproduced:
		var p reproduction
		p.Derivation, p.ContentHash, p.Builder.ID, p.RebuiltOn = s.Deriver, s.ContentHash, c.Builder, when
		st.PredicateType, pred = ReproductionType, &p
	default:
		return nil, fmt.Errorf("statement for %s: unknown kind %q", s.Path, c.Kind)
	}
	var err error
	if st.Predicate, err = json.Marshal(pred); err != nil {
		return nil, err
	}
	return json.Marshal(&st)
}

// ParseStatement reads a statement as MarshalStatement writes it. It must
// also be a valid in-toto Statement v1 (and its predicate valid SLSA
// provenance v1) by the in-toto reference implementation.
func ParseStatement(b []byte) (*Claim, error) {
	var pb intoto.Statement
	if err := protojson.Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("not an in-toto statement: %w", err)
	}
	if err := pb.Validate(); err != nil {
		return nil, fmt.Errorf("not a valid in-toto statement: %w", err)
	}
	var st statement
	if err := strictUnmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading statement: %w", err)
	}
	if st.Type != StatementType {
		return nil, fmt.Errorf("statement type %q, want %q", st.Type, StatementType)
	}
	if len(st.Subject) != 1 {
		return nil, fmt.Errorf("statement has %d subjects, want one store path", len(st.Subject))
	}
	d := st.Subject[0]
	if len(d.Digest) != 2 {
		return nil, fmt.Errorf("subject %s: want exactly the digests sha256 and %s", d.Name, TreeDigest)
	}
	c := &Claim{Subject: Subject{
		Path:        d.Name,
		ContentHash: "blake3:" + d.Digest[TreeDigest],
		LayerDigest: "sha256:" + d.Digest["sha256"],
		References:  d.Annotations.References,
		Deriver:     d.Annotations.Deriver,
	}}
	if err := c.Subject.check(); err != nil {
		return nil, err
	}
	if len(c.Subject.References) == 0 {
		c.Subject.References = nil
	}
	var when string
	switch st.PredicateType {
	case ProvenanceType:
		var pbp slsa.Provenance
		if err := protojson.Unmarshal(st.Predicate, &pbp); err != nil {
			return nil, fmt.Errorf("not SLSA provenance v1: %w", err)
		}
		if err := pbp.Validate(); err != nil {
			return nil, fmt.Errorf("not valid SLSA provenance v1: %w", err)
		}
		var p provenance
		if err := strictUnmarshal(st.Predicate, &p); err != nil {
			return nil, fmt.Errorf("reading provenance: %w", err)
		}
		if p.BuildDefinition.BuildType != BuildType {
			return nil, fmt.Errorf("provenance of build type %q, want %q", p.BuildDefinition.BuildType, BuildType)
		}
		if drv := p.BuildDefinition.ExternalParameters["derivation"]; drv != c.Subject.Deriver {
			return nil, fmt.Errorf("provenance names derivation %v, its subject %s", drv, c.Subject.Deriver)
		}
		c.Kind, c.Builder, when = Built, p.RunDetails.Builder.ID, p.RunDetails.Metadata.FinishedOn
	case ReproductionType:
		var p reproduction
		if err := strictUnmarshal(st.Predicate, &p); err != nil {
			return nil, fmt.Errorf("reading reproduction: %w", err)
		}
		if p.Derivation != c.Subject.Deriver || p.ContentHash != c.Subject.ContentHash {
			return nil, fmt.Errorf("reproduction of %s with %s does not match its subject (%s, %s)", p.Derivation, p.ContentHash, c.Subject.Deriver, c.Subject.ContentHash)
		}
		c.Kind, c.Builder, when = Reproduced, p.Builder.ID, p.RebuiltOn
	default:
		return nil, fmt.Errorf("predicate type %q is neither %s nor %s", st.PredicateType, ProvenanceType, ReproductionType)
	}
	if c.Builder == "" {
		return nil, fmt.Errorf("statement for %s names no builder", c.Subject.Path)
	}
	t, err := time.Parse(time.RFC3339, when)
	if err != nil {
		return nil, fmt.Errorf("statement for %s: time %q: %w", c.Subject.Path, when, err)
	}
	c.Time = t.UTC()
	return c, nil
}

// strictUnmarshal decodes one JSON value, refusing unknown fields and
// trailing data.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}
