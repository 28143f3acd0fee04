package trust

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// MaxEnvelopeSize is the largest envelope hephc reads, and
// MaxSignatures the most signatures it checks in one.
const (
	MaxEnvelopeSize = 1 << 20
	MaxSignatures   = 64
)

// signer makes a SecretKey a DSSE signer.
type signer struct{ k *SecretKey }

func (s signer) Sign(_ context.Context, data []byte) ([]byte, error) { return s.k.Sign(data), nil }
func (s signer) KeyID() (string, error)                              { return string(s.k.Public().ID()), nil }

// Sign returns the DSSE envelope of c's statement signed by k, as JSON.
// ed25519 signatures are deterministic: the same claim and key give the
// same bytes.
func Sign(c *Claim, k *SecretKey) ([]byte, error) {
	payload, err := MarshalStatement(c)
	if err != nil {
		return nil, err
	}
	env, err := signStatement(payload, k)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", c.Subject.Path, err)
	}
	return env, nil
}

// signStatement returns the DSSE envelope of the in-toto statement
// payload signed by k, as JSON.
func signStatement(payload []byte, k *SecretKey) ([]byte, error) {
	es, err := dsse.NewEnvelopeSigner(signer{k})
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(context.Background(), PayloadType, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(env)
}

// Attestation is one valid signature of one envelope: who (a key) says
// what (a claim).
type Attestation struct {
	Claim
	Key KeyID
	// Envelope is sha256:<hex> of the envelope's bytes, which names it.
	Envelope string
}

// SignatureProblem is a signature of an envelope that does not count, and
// why: its key is unknown, or it does not verify.
type SignatureProblem struct {
	Key    KeyID
	Reason string
}

// Verified is what one envelope holds: the attestations of its valid
// signatures and the problems of the others.
type Verified struct {
	Envelope     string // sha256:<hex> of its bytes
	Attestations []Attestation
	Problems     []SignatureProblem
}

// KeyRing finds public keys by id.
type KeyRing interface {
	Key(id KeyID) (PublicKey, bool)
}

// EnvelopeDigest returns sha256:<hex> of b.
func EnvelopeDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// VerifyEnvelope checks each signature of the DSSE envelope b with the key
// its key id names in keys, over the envelope's pre-authentication
// encoding. A signature by an unknown key or one that does not verify is
// a problem, not an error; a malformed envelope, or a payload that one
// valid signature covers but that is not a statement hephc writes, is an
// error. A key that signed twice counts once.
func VerifyEnvelope(b []byte, keys KeyRing) (*Verified, error) {
	payload, valid, v, err := openEnvelope(b, PayloadType, keys)
	if err != nil || len(valid) == 0 {
		return v, err
	}
	c, err := ParseStatement(payload)
	if err != nil {
		return nil, fmt.Errorf("envelope %s: %w", v.Envelope, err)
	}
	for _, id := range valid {
		v.Attestations = append(v.Attestations, Attestation{Claim: *c, Key: id, Envelope: v.Envelope})
	}
	return v, nil
}

// openEnvelope checks each signature of the DSSE envelope b, whose
// payload must be of payloadType, with the key its key id names in keys,
// over the envelope's pre-authentication encoding. It returns the
// payload, the keys whose signatures verify (sorted, each once) and the
// problems of the others in v; a malformed envelope is an error.
func openEnvelope(b []byte, payloadType string, keys KeyRing) (payload []byte, valid []KeyID, v *Verified, err error) {
	if len(b) > MaxEnvelopeSize {
		return nil, nil, nil, fmt.Errorf("envelope of %d bytes: larger than %d", len(b), MaxEnvelopeSize)
	}
	var env dsse.Envelope
	if err := strictUnmarshal(b, &env); err != nil {
		return nil, nil, nil, fmt.Errorf("reading envelope: %w", err)
	}
	if env.PayloadType != payloadType {
		return nil, nil, nil, fmt.Errorf("envelope payload type %q, want %q", env.PayloadType, payloadType)
	}
	// Only standard base64: one payload, one encoding.
	payload, err = base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("envelope payload: not standard base64: %w", err)
	}
	if len(env.Signatures) == 0 {
		return nil, nil, nil, fmt.Errorf("envelope has no signatures")
	}
	if len(env.Signatures) > MaxSignatures {
		return nil, nil, nil, fmt.Errorf("envelope has %d signatures, more than %d", len(env.Signatures), MaxSignatures)
	}
	v = &Verified{Envelope: EnvelopeDigest(b)}
	pae := dsse.PAE(env.PayloadType, payload)
	seen := map[KeyID]bool{}
	for _, s := range env.Signatures {
		id := KeyID(s.KeyID)
		k, ok := keys.Key(id)
		if !ok {
			v.Problems = append(v.Problems, SignatureProblem{Key: id, Reason: "signed by a key the policy does not know"})
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil || !k.Verify(pae, sig) {
			v.Problems = append(v.Problems, SignatureProblem{Key: id, Reason: "bad signature: the envelope was changed after it was signed, or not signed by this key"})
			continue
		}
		if !seen[id] {
			seen[id] = true
			valid = append(valid, id)
		}
	}
	sort.Slice(valid, func(i, j int) bool { return valid[i] < valid[j] })
	return payload, valid, v, nil
}

// ReadClaim returns what envelope b claims without checking any
// signature, and the key ids it names: for listing, never for trust.
func ReadClaim(b []byte) (*Claim, []KeyID, error) {
	var env dsse.Envelope
	if err := strictUnmarshal(b, &env); err != nil {
		return nil, nil, fmt.Errorf("reading envelope: %w", err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope payload: not standard base64: %w", err)
	}
	c, err := ParseStatement(payload)
	if err != nil {
		return nil, nil, err
	}
	var ids []KeyID
	for _, s := range env.Signatures {
		ids = append(ids, KeyID(s.KeyID))
	}
	return c, ids, nil
}

// Keys is a KeyRing of a fixed set of keys.
type Keys map[KeyID]PublicKey

// Key implements KeyRing.
func (ks Keys) Key(id KeyID) (PublicKey, bool) {
	k, ok := ks[id]
	return k, ok
}

// Add adds k.
func (ks Keys) Add(k PublicKey) { ks[k.ID()] = k }

// String names the problem for people.
func (p SignatureProblem) String() string { return fmt.Sprintf("%s: %s", p.Key, p.Reason) }
