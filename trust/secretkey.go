package trust

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// SecretKey is an ed25519 signing key with the name its owner gave it.
type SecretKey struct {
	Name string
	key  ed25519.PrivateKey
}

// GenerateKey makes a new key named name from the random bytes of rand.
func GenerateKey(name string, rand io.Reader) (*SecretKey, error) {
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generating key %s: %w", name, err)
	}
	return &SecretKey{Name: name, key: priv}, nil
}

// KeyFromSeed returns the key named name whose 32-byte ed25519 seed is
// seed (RFC 8032's private key).
func KeyFromSeed(name string, seed []byte) (*SecretKey, error) {
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("key %s: a seed of %d bytes, want %d", name, len(seed), ed25519.SeedSize)
	}
	return &SecretKey{Name: name, key: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public returns the key's public half.
func (k *SecretKey) Public() PublicKey {
	return PublicKey{key: k.key.Public().(ed25519.PublicKey)}
}

// Sign returns the key's signature of msg.
func (k *SecretKey) Sign(msg []byte) []byte { return ed25519.Sign(k.key, msg) }

// The secret key file is JSON (docs/trust.md, "Key files"):
//
//	{"type": "hephc-secret-key-v1", "name": N, "public": "ssh-ed25519 …",
//	 "kdf": {"name": "none"} | {"name": "argon2id", "salt", "time", "memoryKiB", "threads"},
//	 "cipher": "none" | "xchacha20-poly1305", "nonce": B64, "seed": B64}
//
// seed is the key's 32-byte ed25519 seed, in the clear when kdf is none,
// else sealed with XChaCha20-Poly1305 under the argon2id key of the
// passphrase; the additional data is the file's other fields, so none of
// them can be changed without the seal failing.
const secretKeyType = "hephc-secret-key-v1"

type secretKeyFile struct {
	Type   string    `json:"type"`
	Name   string    `json:"name"`
	Public PublicKey `json:"public"`
	KDF    kdfParams `json:"kdf"`
	Cipher string    `json:"cipher"`
	Nonce  []byte    `json:"nonce,omitempty"`
	Seed   []byte    `json:"seed"`
}

type kdfParams struct {
	Name      string `json:"name"`
	Salt      []byte `json:"salt,omitempty"`
	Time      uint32 `json:"time,omitempty"`
	MemoryKiB uint32 `json:"memoryKiB,omitempty"`
	Threads   uint8  `json:"threads,omitempty"`
}

// Argon2id costs for new protected keys (RFC 9106's second recommended
// option, with 2 lanes), and the most a key file may ask for, so that a
// hostile file cannot make reading it take all memory.
const (
	argonTime, argonMemoryKiB, argonThreads       = 3, 64 << 10, 2
	maxArgonTime, maxArgonMemoryKiB, maxArgonLane = 16, 1 << 20, 16
	maxSecretKeyFile                              = 64 << 10
)

// additionalData is what the seal of f covers besides the seed.
func (f *secretKeyFile) additionalData() []byte {
	g := *f
	g.Seed, g.Nonce = nil, nil
	b, err := json.Marshal(&g)
	if err != nil {
		panic(err)
	}
	return b
}

// Marshal returns the key's file. With a passphrase the seed is sealed
// (salt and nonce from rand); with none it is written in the clear.
func (k *SecretKey) Marshal(passphrase []byte, rand io.Reader) ([]byte, error) {
	f := &secretKeyFile{Type: secretKeyType, Name: k.Name, Public: k.Public(), KDF: kdfParams{Name: "none"}, Cipher: "none"}
	seed := k.key.Seed()
	if len(passphrase) == 0 {
		f.Seed = seed
	} else {
		f.KDF = kdfParams{Name: "argon2id", Salt: make([]byte, 16), Time: argonTime, MemoryKiB: argonMemoryKiB, Threads: argonThreads}
		f.Cipher = "xchacha20-poly1305"
		f.Nonce = make([]byte, chacha20poly1305.NonceSizeX)
		if _, err := io.ReadFull(rand, f.KDF.Salt); err != nil {
			return nil, fmt.Errorf("sealing key %s: %w", k.Name, err)
		}
		if _, err := io.ReadFull(rand, f.Nonce); err != nil {
			return nil, fmt.Errorf("sealing key %s: %w", k.Name, err)
		}
		aead, err := chacha20poly1305.NewX(f.KDF.derive(passphrase))
		if err != nil {
			return nil, err
		}
		f.Seed = aead.Seal(nil, f.Nonce, seed, f.additionalData())
	}
	b, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (p *kdfParams) derive(passphrase []byte) []byte {
	return argon2.IDKey(passphrase, p.Salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
}

// ErrPassphraseNeeded is returned by ParseSecretKey for a protected key
// when no passphrase was given.
var ErrPassphraseNeeded = errors.New("the key is protected by a passphrase")

// IsProtected reports whether the key file b is protected by a passphrase.
func IsProtected(b []byte) bool {
	var f secretKeyFile
	return json.Unmarshal(b, &f) == nil && f.KDF.Name != "none"
}

// ParseSecretKey reads a key file. A protected key needs its passphrase;
// a wrong one, or a file changed in any field, is refused.
func ParseSecretKey(b, passphrase []byte) (*SecretKey, error) {
	var f secretKeyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("reading secret key: %w", err)
	}
	if f.Type != secretKeyType {
		return nil, fmt.Errorf("reading secret key: type %q, want %q", f.Type, secretKeyType)
	}
	if err := checkKeyName(f.Name); err != nil {
		return nil, fmt.Errorf("reading secret key: %w", err)
	}
	var seed []byte
	switch {
	case f.KDF.Name == "none" && f.Cipher == "none":
		seed = f.Seed
	case f.KDF.Name == "argon2id" && f.Cipher == "xchacha20-poly1305":
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("reading secret key %s: %w", f.Name, ErrPassphraseNeeded)
		}
		p := f.KDF
		if len(p.Salt) < 16 || p.Time < 1 || p.Time > maxArgonTime || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgonMemoryKiB || p.Threads < 1 || p.Threads > maxArgonLane {
			return nil, fmt.Errorf("reading secret key %s: argon2id parameters out of range (time 1–%d, memory up to %d KiB, 1–%d threads, salt of 16 bytes or more)", f.Name, maxArgonTime, maxArgonMemoryKiB, maxArgonLane)
		}
		if len(f.Nonce) != chacha20poly1305.NonceSizeX {
			return nil, fmt.Errorf("reading secret key %s: nonce of %d bytes, want %d", f.Name, len(f.Nonce), chacha20poly1305.NonceSizeX)
		}
		aead, err := chacha20poly1305.NewX(p.derive(passphrase))
		if err != nil {
			return nil, err
		}
		if seed, err = aead.Open(nil, f.Nonce, f.Seed, f.additionalData()); err != nil {
			return nil, fmt.Errorf("reading secret key %s: wrong passphrase, or the file was changed", f.Name)
		}
	default:
		return nil, fmt.Errorf("reading secret key %s: unknown protection kdf %q, cipher %q", f.Name, f.KDF.Name, f.Cipher)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("reading secret key %s: seed of %d bytes, want %d", f.Name, len(seed), ed25519.SeedSize)
	}
	k := &SecretKey{Name: f.Name, key: ed25519.NewKeyFromSeed(seed)}
	if k.Public().ID() != f.Public.ID() {
		return nil, fmt.Errorf("reading secret key %s: its public key %s does not match its secret key (%s)", f.Name, f.Public.ID(), k.Public().ID())
	}
	return k, nil
}

// WriteSecretKeyFile writes k to a new file at path, mode 0600 (never
// over an existing file).
func WriteSecretKeyFile(path string, k *SecretKey, passphrase []byte, rand io.Reader) error {
	b, err := k.Marshal(passphrase, rand)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing secret key: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing secret key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing secret key %s: %w", path, err)
	}
	return f.Close()
}

// ReadSecretKeyFile reads the key file at path, which only its owner may
// read (as ssh demands: mode 0600 or stricter). passphrase is asked for
// only when the key is protected.
func ReadSecretKeyFile(path string, passphrase func() ([]byte, error)) (*SecretKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading secret key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading secret key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("reading secret key %s: mode %04o lets others read it; only its owner may (chmod 600 %s)", path, perm, filepath.Base(path))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading secret key %s: %w", path, err)
	}
	if len(b) > maxSecretKeyFile {
		return nil, fmt.Errorf("reading secret key %s: larger than %d bytes", path, maxSecretKeyFile)
	}
	var pass []byte
	if IsProtected(b) {
		if passphrase == nil {
			return nil, fmt.Errorf("reading secret key %s: %w", path, ErrPassphraseNeeded)
		}
		if pass, err = passphrase(); err != nil {
			return nil, fmt.Errorf("reading secret key %s: %w", path, err)
		}
	}
	k, err := ParseSecretKey(b, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// checkKeyName reports whether name may name a key or a person: 1 to 64
// bytes of [A-Za-z0-9._-], not starting with '.' or '-'.
func checkKeyName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("invalid key name %q: 1 to 64 bytes of A-Z a-z 0-9 . _ -, not starting with '.' or '-'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("invalid key name %q: 1 to 64 bytes of A-Z a-z 0-9 . _ -, not starting with '.' or '-'", name)
		}
	}
	return nil
}
