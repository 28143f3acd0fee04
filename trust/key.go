package trust

import (
	"crypto/ed25519"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KeyID names a public key: its OpenSSH SHA-256 fingerprint
// ("SHA256:" and 43 unpadded base64 characters), which `ssh-keygen -l -f
// KEY.pub` prints for the same key. It is derived from the key alone; a
// key's name is only a label.
type KeyID string

// PublicKey is an ed25519 public key.
type PublicKey struct {
	key ed25519.PublicKey
}

// NewPublicKey wraps a raw ed25519 public key.
func NewPublicKey(k ed25519.PublicKey) (PublicKey, error) {
	if len(k) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("an ed25519 public key is %d bytes, got %d", ed25519.PublicKeySize, len(k))
	}
	return PublicKey{key: append(ed25519.PublicKey(nil), k...)}, nil
}

// ParsePublicKey parses a public key as an OpenSSH authorized_keys line
// gives it: "ssh-ed25519 AAAA…", optionally followed by a comment.
func ParsePublicKey(s string) (PublicKey, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, ssh.KeyAlgoED25519+" ") {
		return PublicKey{}, fmt.Errorf("parsing public key %q: want \"ssh-ed25519 AAAA…\" (an OpenSSH ed25519 public key)", abbreviate(s))
	}
	pk, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return PublicKey{}, fmt.Errorf("parsing public key %q: %w", abbreviate(s), err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return PublicKey{}, fmt.Errorf("parsing public key %q: one key per line", abbreviate(s))
	}
	cpk, ok := pk.(ssh.CryptoPublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("parsing public key %q: not an ed25519 key", abbreviate(s))
	}
	ed, ok := cpk.CryptoPublicKey().(ed25519.PublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("parsing public key %q: not an ed25519 key", abbreviate(s))
	}
	return NewPublicKey(ed)
}

// String returns the key as OpenSSH writes it: "ssh-ed25519 AAAA…".
func (k PublicKey) String() string {
	if k.key == nil {
		return ""
	}
	pk, err := ssh.NewPublicKey(k.key)
	if err != nil {
		panic(err) // a valid ed25519 key always converts
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
}

// ID returns the key's id.
func (k PublicKey) ID() KeyID {
	if k.key == nil {
		return ""
	}
	pk, err := ssh.NewPublicKey(k.key)
	if err != nil {
		panic(err)
	}
	return KeyID(ssh.FingerprintSHA256(pk))
}

// IsZero reports whether k holds no key.
func (k PublicKey) IsZero() bool { return k.key == nil }

// Verify reports whether sig is k's signature of msg.
func (k PublicKey) Verify(msg, sig []byte) bool {
	return k.key != nil && len(sig) == ed25519.SignatureSize && ed25519.Verify(k.key, msg, sig)
}

// Raw returns the 32 bytes of the key.
func (k PublicKey) Raw() ed25519.PublicKey { return append(ed25519.PublicKey(nil), k.key...) }

// MarshalText implements encoding.TextMarshaler.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *PublicKey) UnmarshalText(b []byte) error {
	p, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// abbreviate cuts s for an error message.
func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
