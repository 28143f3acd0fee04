package trust

import (
	"context"
	"crypto"
	"errors"
)

// dsseVerifier is a PublicKey as the DSSE library's Verifier.
type dsseVerifier struct{ k PublicKey }

func (v dsseVerifier) Verify(_ context.Context, data, sig []byte) error {
	if !v.k.Verify(data, sig) {
		return errors.New("bad signature")
	}
	return nil
}
func (v dsseVerifier) KeyID() (string, error)   { return string(v.k.ID()), nil }
func (v dsseVerifier) Public() crypto.PublicKey { return v.k.Raw() }
