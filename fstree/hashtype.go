package fstree

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// HashSize is the size in bytes of a tree hash (blake3-256).
const HashSize = 32

// Hash is the canonical hash of a file tree (docs/store.md, "Output
// content hash"); the store calls it an output's content hash.
type Hash [HashSize]byte

const hashPrefix = "blake3:"

// String returns "blake3:" and 64 lowercase hex digits, the form CUE pins use.
func (h Hash) String() string { return hashPrefix + hex.EncodeToString(h[:]) }

// ParseHash parses the form String returns.
func ParseHash(s string) (Hash, error) {
	var h Hash
	rest, ok := strings.CutPrefix(s, hashPrefix)
	if !ok || len(rest) != 2*HashSize {
		return h, fmt.Errorf("parsing output hash %q: want %s and %d hex digits", s, hashPrefix, 2*HashSize)
	}
	if _, err := hex.Decode(h[:], []byte(rest)); err != nil || strings.ToLower(rest) != rest {
		return h, fmt.Errorf("parsing output hash %q: want lowercase hex digits", s)
	}
	return h, nil
}

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}
