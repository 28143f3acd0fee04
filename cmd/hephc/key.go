package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/trust"
)

func init() {
	register(&command{
		name:    "key",
		args:    "generate --name NAME [--dir DIR] [--passphrase-file FILE] | public [--pem] FILE",
		summary: "make an ed25519 signing key, or print a key's public half and id",
		flags: func(fs *pflag.FlagSet) {
			fs.String("name", "", "the key's name (generate): NAME.key and NAME.pub are written")
			fs.String("dir", "", "where generate writes the key files (default: the current directory)")
			fs.String("passphrase-file", "", "seal the secret key with the passphrase in FILE (its first line)")
			fs.Bool("pem", false, "public: print the key as PEM (SubjectPublicKeyInfo), for openssl")
		},
		run: runKey,
	})
}

func runKey(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("want generate or public")
	}
	switch args[0] {
	case "generate":
		if len(args) != 1 {
			return usagef("generate takes no arguments")
		}
		name, _ := fs.GetString("name")
		dir, _ := fs.GetString("dir")
		passFile, _ := fs.GetString("passphrase-file")
		if name == "" {
			return usagef("generate needs --name")
		}
		return generateKey(e, name, absPath(e.cwd, dir), passFile)
	case "public":
		if len(args) != 2 {
			return usagef("public takes one key file")
		}
		k, err := readAnyPublicKey(e, args[1])
		if err != nil {
			return err
		}
		if asPEM, _ := fs.GetBool("pem"); asPEM {
			der, err := x509.MarshalPKIXPublicKey(k.Raw())
			if err != nil {
				return err
			}
			return pem.Encode(e.stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
		}
		fmt.Fprintln(e.stdout, k)
		fmt.Fprintln(e.stdout, k.ID())
		return nil
	}
	return usagef("unknown key command %q: want generate or public", args[0])
}

func generateKey(e *env, name, dir, passFile string) error {
	var pass []byte
	if passFile != "" {
		var err error
		if pass, err = readPassphrase(absPath(e.cwd, passFile)); err != nil {
			return err
		}
	}
	k, err := trust.GenerateKey(name, rand.Reader)
	if err != nil {
		return err
	}
	secret, public := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if _, err := os.Lstat(public); err == nil {
		return fmt.Errorf("generating key %s: %s exists", name, public)
	}
	if err := trust.WriteSecretKeyFile(secret, k, pass, rand.Reader); err != nil {
		return err
	}
	line := k.Public().String() + " " + name + "\n"
	if err := os.WriteFile(public, []byte(line), 0o644); err != nil {
		os.Remove(secret)
		return fmt.Errorf("generating key %s: %w", name, err)
	}
	fmt.Fprint(e.stdout, line)
	fmt.Fprintf(e.stderr, "key %s (%s): secret key in %s (mode 0600), public key in %s\n", name, k.Public().ID(), secret, public)
	return nil
}

// readAnyPublicKey reads a public key file, or the public half of a
// secret key file (no passphrase needed: the public key is in the clear).
func readAnyPublicKey(e *env, file string) (trust.PublicKey, error) {
	b, err := os.ReadFile(absPath(e.cwd, file))
	if err != nil {
		return trust.PublicKey{}, err
	}
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, "{") {
		var f struct {
			Public trust.PublicKey `json:"public"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return trust.PublicKey{}, fmt.Errorf("%s: %w", file, err)
		}
		return f.Public, nil
	}
	return trust.ParsePublicKey(s)
}

// readPassphrase returns the first line of file.
func readPassphrase(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line == "" {
		return nil, fmt.Errorf("reading the passphrase: %s is empty", file)
	}
	return []byte(line), nil
}

// readSecretKey reads the key file for signing, asking passFile for its
// passphrase when it is protected.
func readSecretKey(e *env, file, passFile string) (*trust.SecretKey, error) {
	return trust.ReadSecretKeyFile(absPath(e.cwd, file), func() ([]byte, error) {
		if passFile == "" {
			return nil, fmt.Errorf("%w: give it with --passphrase-file", trust.ErrPassphraseNeeded)
		}
		return readPassphrase(absPath(e.cwd, passFile))
	})
}
