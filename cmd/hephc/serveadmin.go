// serve init, token and backup: the administrator's commands on a
// server's data directory.

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/server"
	"hephc.dev/hephc/trust"
)

// The TLS certificate and key serve init makes, in the data directory.
const (
	certFile = "tls.crt"
	keyFile  = "tls.key"
)

func runServeInit(e *env, fs *pflag.FlagSet, args []string) error {
	dir, err := serverDataDir(e, fs)
	if err != nil {
		return err
	}
	spec, err := loadServerSpec(e, nil, args)
	if err != nil {
		return err
	}
	k, _ := fs.GetInt("threshold")
	n, _ := fs.GetInt("root-keys")
	given, _ := fs.GetStringArray("root-key")
	passFile, _ := fs.GetString("passphrase-file")
	offline, _ := fs.GetString("offline-dir")
	offline = absPath(e.cwd, offline)
	if len(given) > 0 && fs.Changed("root-keys") {
		return usagef("--root-key and --root-keys: choose one")
	}
	if len(given) > 0 {
		n = len(given)
	}
	if k < 1 || n < k {
		return usagef("want 1 ≤ --threshold (%d) ≤ the number of root keys (%d)", k, n)
	}
	if _, err := os.Stat(filepath.Join(dir, server.DBFile)); err == nil {
		return fmt.Errorf("serve init: %s holds a server already", dir)
	}
	clock, err := serverClock(e)
	if err != nil {
		return err
	}
	// The configuration's certificate (server.tls), checked before
	// anything is made; else one made here.
	var fp, certSaid string
	if spec.TLS != nil {
		cert, err := spec.certificate(dir, clock.Now())
		if err != nil {
			return err
		}
		fp, certSaid = certFingerprint(cert.Certificate[0]), "the TLS certificate server.tls names"
	}
	files := given
	if len(files) == 0 {
		if err := os.MkdirAll(offline, 0o700); err != nil {
			return err
		}
		quiet := *e
		quiet.stdout = e.stderr
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("root-%d", i)
			if err := generateKey(&quiet, name, offline, passFile); err != nil {
				return err
			}
			files = append(files, filepath.Join(offline, name+".key"))
		}
	}
	var signers []channel.Signer
	for _, f := range files {
		sk, err := readSecretKey(e, f, passFile)
		if err != nil {
			return err
		}
		signers = append(signers, server.Signer(sk))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	rootHash, err := server.Init(dir, signers, k, clock)
	if err != nil {
		return err
	}
	if spec.TLS == nil {
		hosts, _ := fs.GetStringArray("host")
		hosts = certHosts(spec, hosts)
		if fp, err = writeCertificate(dir, hosts, clock.Now()); err != nil {
			return err
		}
		certSaid = fmt.Sprintf("the TLS certificate %s for %s", certFile, strings.Join(hosts, ", "))
	}
	fmt.Fprintf(e.stderr, "server initialized in %s: the online key %s, %s\n", dir, server.OnlineKeyFile, certSaid)
	if len(given) == 0 {
		fmt.Fprintf(e.stderr, "the %d root keys (%d of them sign a new root) are in %s: take them offline; the server keeps only their public halves\n", n, k, offline)
	}
	fmt.Fprintln(e.stderr, "pin these in the configuration's server: (clients verify the channels and the server with them):")
	fmt.Fprintf(e.stdout, "rootHash:    %q\ncertificate: %q\n", rootHash, fp)
	return nil
}

// certHosts are the names the certificate is for: server.url's host,
// server.listen's (unless it is every address), the --host ones, and
// loopback.
func certHosts(spec *serverSpec, extra []string) []string {
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, extra...)
	if u, err := url.Parse(spec.URL); err == nil && u.Hostname() != "" {
		hosts = append(hosts, u.Hostname())
	}
	if h, _, err := net.SplitHostPort(spec.Listen); err == nil {
		if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// writeCertificate makes a self-signed TLS certificate (ECDSA P-256, two
// years) for hosts in dir and returns its fingerprint.
func writeCertificate(dir string, hosts []string, now time.Time) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "hephc package server"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", err
	}
	return certFingerprint(der), nil
}

// certFingerprint is what server.certificate pins: sha256 of the DER.
func certFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// adminServer opens the data directory's server for an administrator's
// command (token, backup), which needs neither the registry nor the
// trust policies.
func adminServer(e *env, fs *pflag.FlagSet) (*server.Server, error) {
	dir, err := serverDataDir(e, fs)
	if err != nil {
		return nil, err
	}
	cfg := server.Config{Trust: []*trust.Policy{{Source: "administration"}}, Registry: noRegistry{}}
	return server.Open(dir, cfg, server.SystemClock{})
}

// noRegistry is the registry of an administrator's command: never read.
type noRegistry struct{}

func (noRegistry) Manifest(context.Context, string) ([]byte, error) {
	return nil, errors.New("no registry in an administrator's command")
}

func (noRegistry) Blob(context.Context, string) (io.ReadCloser, error) {
	return nil, errors.New("no registry in an administrator's command")
}

// admin names who runs an administrator's command, for the audit log.
func admin() string {
	if u, err := user.Current(); err == nil {
		return "admin " + u.Username
	}
	return fmt.Sprintf("admin uid %d", os.Getuid())
}

func runServeToken(e *env, fs *pflag.FlagSet, args []string) error {
	role, _ := fs.GetString("role")
	revoke, _ := fs.GetString("revoke")
	if revoke != "" {
		if len(args) > 0 || role != "" {
			return usagef("token --revoke NAME takes nothing else")
		}
		s, err := adminServer(e, fs)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.RevokeToken(context.Background(), admin(), revoke); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "revoked the token %s\n", revoke)
		return nil
	}
	if len(args) != 1 {
		return usagef("want token --role ROLE NAME")
	}
	if !slices.Contains(server.Roles, server.Role(role)) {
		return usagef("--role %q: want one of reader, reporter, publisher, maintainer", role)
	}
	s, err := adminServer(e, fs)
	if err != nil {
		return err
	}
	defer s.Close()
	secret, err := s.CreateToken(context.Background(), admin(), args[0], server.Role(role))
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, secret)
	fmt.Fprintf(e.stderr, "token %s (%s): shown once, stored only as its hash; give it to its user in %s or a --token-file\n", args[0], role, TokenEnv)
	return nil
}

func runServeBackup(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) != 1 {
		return usagef("want backup FILE")
	}
	file := absPath(e.cwd, args[0])
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("serve backup: %s exists", file)
	}
	s, err := adminServer(e, fs)
	if err != nil {
		return err
	}
	defer s.Close()
	tmp, err := os.CreateTemp(filepath.Dir(file), ".backup-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := s.Backup(context.Background(), tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	fi, _ := tmp.Stat()
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "backed up the server's state to %s (%d bytes): put it at %s in a data directory with the same %s\n", file, fi.Size(), server.DBFile, server.OnlineKeyFile)
	return nil
}
