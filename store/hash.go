package store

import (
	"encoding/base32"
	"fmt"

	"github.com/zeebo/blake3"

	"hephc.dev/hephc/fstree"
)

// HashSize is the size in bytes of every hash hephc computes (blake3-256).
const HashSize = 32

// hashEncoding is RFC 4648 base32 (its bit order) over the alphabet Nix
// uses (no e, o, u, t: store paths do not spell words), unpadded: 52
// characters for 32 bytes. It is not Nix's base32 of the same bytes.
var hashEncoding = base32.NewEncoding("0123456789abcdfghijklmnpqrsvwxyz").WithPadding(base32.NoPadding)

// HashStringLen is the length of a DrvHash's string form.
var HashStringLen = hashEncoding.EncodedLen(HashSize)

// DrvHash identifies a derivation: blake3-256 of its canonical encoding. It
// is what a build is keyed by (Go's cache calls this an ActionID).
type DrvHash [HashSize]byte

// HashDerivation hashes a canonical encoding.
func HashDerivation(canonical []byte) DrvHash { return DrvHash(blake3.Sum256(canonical)) }

// String returns the 52-character base32 form used in store paths.
func (h DrvHash) String() string { return hashEncoding.EncodeToString(h[:]) }

// ParseDrvHash parses the form String returns.
func ParseDrvHash(s string) (DrvHash, error) {
	var h DrvHash
	if len(s) != HashStringLen {
		return h, fmt.Errorf("parsing derivation hash %q: want %d base32 characters, got %d", s, HashStringLen, len(s))
	}
	b, err := hashEncoding.DecodeString(s)
	if err != nil {
		return h, fmt.Errorf("parsing derivation hash %q: %w", s, err)
	}
	copy(h[:], b)
	if h.String() != s {
		return h, fmt.Errorf("parsing derivation hash %q: not in canonical form", s)
	}
	return h, nil
}

// MarshalText implements encoding.TextMarshaler.
func (h DrvHash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *DrvHash) UnmarshalText(b []byte) error {
	p, err := ParseDrvHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// OutputHash identifies the content of an output: the canonical tree hash
// of package fstree, blake3-256 of the tree's canonical serialization (Go's
// cache calls this an OutputID). Its String form is blake3:<64 hex digits>.
type OutputHash = fstree.Hash

// ParseOutputHash parses the form OutputHash.String returns.
func ParseOutputHash(s string) (OutputHash, error) { return fstree.ParseHash(s) }
