package trust

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// The formats of a signed manifest (docs/trust.md, "Manifests").
const (
	// ManifestType is a manifest's _type.
	ManifestType = "https://hephc.dev/manifest/v1"
	// ManifestPredicateType is the predicate of a statement that signs a
	// manifest: "I vouch for each of its paths having its content hash"
	// (StageX's make sign).
	ManifestPredicateType = "https://hephc.dev/attestation/manifest/v1"
	// ManifestFile is the name a manifest is signed under: the statement's
	// subject.
	ManifestFile = "manifest.json"
)

// MaxManifestSize is the largest manifest hephc reads.
const MaxManifestSize = 64 << 20

// Manifest is what a generation holds, to be co-signed: its roots (the
// attribute each is written at) and every path of their closure with its
// content hash, sorted by path. Its bytes (Marshal) depend on nothing
// else, so people who built the same generation get the same manifest
// and sign the same sha256.
type Manifest struct {
	Type  string            `json:"_type"`
	Roots map[string]string `json:"roots"`
	Paths []ManifestPath    `json:"paths"`
}

// ManifestPath is one store path and its content hash.
type ManifestPath struct {
	Path        string `json:"path"`
	ContentHash string `json:"contentHash"`
}

// check reports whether m is well formed: store paths, content hashes,
// paths sorted and each once, every root one of the paths.
func (m *Manifest) check() error {
	if m.Type != ManifestType {
		return fmt.Errorf("manifest type %q, want %q", m.Type, ManifestType)
	}
	in := map[string]bool{}
	for i, p := range m.Paths {
		if !strings.HasPrefix(p.Path, "/heph/store/") || strings.Count(p.Path, "/") != 3 {
			return fmt.Errorf("manifest: %q is not a store path /heph/store/<hash>-<name>", p.Path)
		}
		if _, ok := hexDigest(p.ContentHash, "blake3:"); !ok {
			return fmt.Errorf("manifest: %s: content hash %q is not blake3:<64 hex digits>", p.Path, p.ContentHash)
		}
		if i > 0 && m.Paths[i-1].Path >= p.Path {
			return fmt.Errorf("manifest: paths not sorted, or %s twice", p.Path)
		}
		in[p.Path] = true
	}
	for attr, p := range m.Roots {
		if !in[p] {
			return fmt.Errorf("manifest: root %s (%s) is not one of its paths", attr, p)
		}
	}
	return nil
}

// Marshal returns the manifest's bytes: JSON, indented with tabs, map
// keys sorted, a final newline.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseManifest reads a manifest, which must be exactly as Marshal writes
// it: one manifest, one byte string, one digest.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes: larger than %d", len(b), MaxManifestSize)
	}
	var m Manifest
	if err := strictUnmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	again, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return nil, fmt.Errorf("reading manifest: not in its one form (tab-indented JSON, sorted, a final newline): written by hand?")
	}
	return &m, nil
}

// manifestStatement is the in-toto statement signing a manifest.
type manifestStatement struct {
	Type          string               `json:"_type"`
	Subject       []manifestDescriptor `json:"subject"`
	PredicateType string               `json:"predicateType"`
	Predicate     manifestPredicate    `json:"predicate"`
}

type manifestDescriptor struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

type manifestPredicate struct {
	Paths int `json:"paths"`
}

// manifestDigest is the hex sha256 of a manifest's bytes.
func manifestDigest(manifest []byte) string {
	sum := sha256.Sum256(manifest)
	return hex.EncodeToString(sum[:])
}

// SignManifest returns k's detached signature of manifest (as Marshal
// wrote it): a DSSE envelope of an in-toto statement whose subject is
// ManifestFile with the manifest's sha256. It holds no time: the same key
// signing the same manifest gives the same envelope.
func SignManifest(manifest []byte, k *SecretKey) ([]byte, error) {
	m, err := ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(&manifestStatement{
		Type:          StatementType,
		Subject:       []manifestDescriptor{{Name: ManifestFile, Digest: map[string]string{"sha256": manifestDigest(manifest)}}},
		PredicateType: ManifestPredicateType,
		Predicate:     manifestPredicate{Paths: len(m.Paths)},
	})
	if err != nil {
		return nil, err
	}
	env, err := signStatement(payload, k)
	if err != nil {
		return nil, fmt.Errorf("signing the manifest: %w", err)
	}
	return env, nil
}

// VerifyManifestSignature checks the detached signature env of manifest
// with keys: it returns the keys whose signatures verify over a statement
// about exactly these bytes, and the problems of the other signatures.
// An envelope that is malformed, or whose valid signature covers a
// statement about other bytes, is an error.
func VerifyManifestSignature(env, manifest []byte, keys KeyRing) ([]KeyID, []SignatureProblem, error) {
	payload, valid, v, err := openEnvelope(env, PayloadType, keys)
	if err != nil {
		return nil, nil, err
	}
	if len(valid) == 0 {
		return nil, v.Problems, nil
	}
	var pb intoto.Statement
	if err := protojson.Unmarshal(payload, &pb); err != nil {
		return nil, nil, fmt.Errorf("envelope %s: not an in-toto statement: %w", v.Envelope, err)
	}
	if err := pb.Validate(); err != nil {
		return nil, nil, fmt.Errorf("envelope %s: not a valid in-toto statement: %w", v.Envelope, err)
	}
	var st manifestStatement
	if err := strictUnmarshal(payload, &st); err != nil {
		return nil, nil, fmt.Errorf("envelope %s: not a manifest's signature: %w", v.Envelope, err)
	}
	if st.Type != StatementType || st.PredicateType != ManifestPredicateType || len(st.Subject) != 1 || st.Subject[0].Name != ManifestFile || len(st.Subject[0].Digest) != 1 {
		return nil, nil, fmt.Errorf("envelope %s: not a manifest's signature (predicate %q)", v.Envelope, st.PredicateType)
	}
	if got, want := st.Subject[0].Digest["sha256"], manifestDigest(manifest); got != want {
		return nil, nil, fmt.Errorf("envelope %s: signs the manifest with sha256 %s, not this one (%s)", v.Envelope, got, want)
	}
	return valid, v.Problems, nil
}

// Signers says which people of p the keys ids are at now: each person
// once, sorted; and why the other keys do not count (unknown to p,
// revoked, expired).
func (p *Policy) Signers(ids []KeyID, now time.Time) (people, notCounted []string) {
	seen := map[string]bool{}
	for _, id := range ids {
		who, known, problem := p.KeyStatus(id, now)
		switch {
		case !known:
			notCounted = append(notCounted, fmt.Sprintf("%s: a key the policy does not know", id))
		case problem != "":
			notCounted = append(notCounted, fmt.Sprintf("%s's key %s: %s", who, id, problem))
		case !seen[who]:
			seen[who] = true
			people = append(people, who)
		}
	}
	sort.Strings(people)
	return people, slices.Compact(notCounted)
}
