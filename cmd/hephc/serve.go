package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"cuelang.org/go/cue"
	"github.com/spf13/pflag"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/server"
	"hephc.dev/hephc/trust"
)

// ServerDataEnv is the package server's data directory when --data is
// not given.
const ServerDataEnv = "HEPHC_SERVER_DATA"

// ServerClockEnv moves the server's clock by a duration ("192h"): for
// tests only, so that a promotion a week away can be seen now. Never set
// it on a real server: the channel metadata it signs would carry the
// moved time.
const ServerClockEnv = "HEPHC_TEST_SERVER_CLOCK"

// The TLS certificate and key serve init makes, in the data directory.
const (
	certFile = "tls.crt"
	keyFile  = "tls.key"
)

func init() {
	register(&command{
		name:    "serve",
		args:    "[--listen ADDR] FILE.cue…|DIR | init [--threshold K --root-keys N | --root-key FILE…] FILE.cue… | token --role ROLE NAME | token --revoke NAME | backup FILE",
		summary: "run the package server the configuration's server: describes (init: make its keys and certificate; token, backup: administer it)",
		flags: func(fs *pflag.FlagSet) {
			fs.String("data", "", "the server's data directory (env "+ServerDataEnv+"; default $XDG_DATA_HOME/hephc-server)")
			fs.String("listen", "", "serve: listen on this address instead of server.listen")
			fs.String("registry", "", "serve: the packages' registry, oci://HOST/REPOSITORY, instead of server.registry")
			policyFlag(fs)
			fs.Int("threshold", 1, "init: how many root keys must sign the root (k)")
			fs.Int("root-keys", 1, "init: how many root keys to generate (n)")
			fs.StringArray("root-key", nil, "init: sign with this hephc key file instead of generating keys (repeatable)")
			fs.String("offline-dir", "server-root-keys", "init: where the generated root keys are written, for the administrators to take offline")
			fs.String("passphrase-file", "", "init: seal the generated root keys with the passphrase in this file (or read --root-key files with it)")
			fs.StringArray("host", nil, "init: a name or address the TLS certificate is for, beside server.url's and server.listen's (repeatable)")
			fs.String("role", "", "token: the token's role: reader, reporter, publisher or maintainer")
			fs.String("revoke", "", "token: revoke the token of this name")
		},
		run: runServe,
	})
}

func runServe(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "init":
			return runServeInit(e, fs, args[1:])
		case "token":
			return runServeToken(e, fs, args[1:])
		case "backup":
			return runServeBackup(e, fs, args[1:])
		}
	}
	dir, err := serverDataDir(e, fs)
	if err != nil {
		return err
	}
	spec, err := loadServerSpec(e, fs, args)
	if err != nil {
		return err
	}
	cfg, err := spec.config(e, fs)
	if err != nil {
		return err
	}
	clock, err := serverClock(e)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return fmt.Errorf("serve: the TLS certificate (hephc serve init makes it): %w", err)
	}
	s, err := server.Open(dir, *cfg, clock)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rootHash, err := s.RootHash(ctx)
	if err != nil {
		return err
	}
	// What waited while the server was down: evaluated and re-signed now.
	if err := s.Tick(ctx); err != nil {
		return err
	}
	listen, _ := fs.GetString("listen")
	if listen == "" {
		listen = spec.Listen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(e.stderr, "serving https://%s (root %s, certificate %s), packages in %s, data in %s\n",
		ln.Addr(), rootHash, certFingerprint(cert.Certificate[0]), cfg.RegistryName, dir)
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(e.stderr, "hephc serve: ", 0),
	}
	go s.Run(ctx, func(err error) { fmt.Fprintf(e.stderr, "hephc serve: %v\n", err) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err = srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		fmt.Fprintln(e.stderr, "stopped")
		return nil
	}
	return err
}

// serverDataDir is --data, HEPHC_SERVER_DATA, or $XDG_DATA_HOME/hephc-server.
func serverDataDir(e *env, fs *pflag.FlagSet) (string, error) {
	dir, _ := fs.GetString("data")
	if dir == "" {
		dir = e.getenv(ServerDataEnv)
	}
	if dir == "" {
		base := e.getenv("XDG_DATA_HOME")
		if base == "" {
			home := e.getenv("HOME")
			if home == "" {
				return "", errors.New("serve: no data directory: give --data DIR or set " + ServerDataEnv)
			}
			base = filepath.Join(home, ".local", "share")
		}
		dir = filepath.Join(base, "hephc-server")
	}
	return absPath(e.cwd, dir), nil
}

// serverClock is the system's clock, moved by HEPHC_TEST_SERVER_CLOCK in
// tests.
func serverClock(e *env) (server.Clock, error) {
	v := e.getenv(ServerClockEnv)
	if v == "" {
		return server.SystemClock{}, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: want a duration (tests only): %w", ServerClockEnv, v, err)
	}
	return movedClock(d), nil
}

type movedClock time.Duration

func (m movedClock) Now() time.Time { return time.Now().Add(time.Duration(m)) }

// serverSpec is the configuration's server: field.
type serverSpec struct {
	Listen      string `json:"listen"`
	URL         string `json:"url"`
	RootHash    string `json:"rootHash"`
	Certificate string `json:"certificate"`
	Registry    string `json:"registry"`
	Promotion   struct {
		After  string `json:"after"`
		Quorum struct {
			Signatures    int `json:"signatures"`
			Reproductions int `json:"reproductions"`
		} `json:"quorum"`
	} `json:"promotion"`
	Page struct {
		Public bool `json:"public"`
	} `json:"page"`

	diag  lang.Diagnostic // where server: is written, for errors
	trust []*trust.Policy // the configuration's trust policies (and --policy's)
}

// errorf is an error at the server: field.
func (s *serverSpec) errorf(format string, args ...any) error {
	d := s.diag
	d.Msg = fmt.Sprintf(format, args...)
	return lang.Diagnostics{d}
}

// loadServerSpec reads the configuration's server: field and its trust
// policies.
func loadServerSpec(e *env, fs *pflag.FlagSet, args []string) (*serverSpec, error) {
	if len(args) == 0 {
		return nil, usagef("want the configuration that declares the server (FILE.cue… or DIR)")
	}
	l := lang.NewLoader(e.cwd)
	cfg, err := l.Load(args...)
	if err != nil {
		return nil, err
	}
	v := cfg.Value.LookupPath(cue.ParsePath("server"))
	if !v.Exists() {
		return nil, lang.Diagnostics{{Msg: fmt.Sprintf("%s declares no server: (heph.#Server)", strings.Join(args, " "))}}
	}
	spec := &serverSpec{}
	if err := v.Decode(spec); err != nil {
		return nil, l.Diagnose(err)
	}
	spec.diag = lang.Diagnostic{Pos: eval.ValuePos(v), Path: "server"}
	if spec.diag.Pos.IsValid() {
		spec.diag.Pos = spec.diag.Pos.RelTo(e.cwd)
	}
	var files []string
	if fs != nil {
		policyFiles, _ := fs.GetStringArray("policy")
		for _, f := range policyFiles {
			files = append(files, absPath(e.cwd, f))
		}
	}
	set, err := policy.Load(l, cfg, policy.Files(cfg, files))
	if err != nil {
		return nil, err
	}
	if spec.trust, err = set.Trust(); err != nil {
		return nil, err
	}
	return spec, nil
}

// config is the library's configuration: the promotion rules (the
// quorum for stable over the trust policies' people), the trust
// policies a publish must meet, the registry.
func (s *serverSpec) config(e *env, fs *pflag.FlagSet) (*server.Config, error) {
	cfg := &server.Config{Trust: s.trust, PublicPage: s.Page.Public}
	if len(s.trust) == 0 {
		return nil, s.errorf("the server admits nothing without a trust policy: give the configuration's policy a trust: field (heph.#TrustPolicy), or --policy FILE")
	}
	after, err := time.ParseDuration(s.Promotion.After)
	if err != nil {
		return nil, s.errorf("promotion.after %q: %v", s.Promotion.After, err)
	}
	cfg.Promotion.After = after
	// One k: the quorum for stable is each trust policy's people with
	// promotion.quorum's counts.
	for _, p := range s.trust {
		q := *p
		q.Source = p.Source + " (server.promotion.quorum)"
		q.Rules = []trust.Rule{{Signatures: s.Promotion.Quorum.Signatures, Reproductions: s.Promotion.Quorum.Reproductions, Pos: s.diag.Pos}}
		cfg.Promotion.Stable = append(cfg.Promotion.Stable, &q)
	}
	reg, _ := fs.GetString("registry")
	if reg == "" {
		reg = s.Registry
	}
	if reg == "" {
		return nil, s.errorf("no registry for the packages: name one (registry: \"oci://HOST/REPOSITORY\", or --registry); hephc embeds none (docs/server.md)")
	}
	ref, err := registry.ParseRef(reg)
	if err != nil {
		return nil, s.errorf("%v", err)
	}
	cfg.Registry = &server.RemoteRegistry{Repo: ref.Repo}
	cfg.RegistryName = ref.String()
	return cfg, nil
}

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
	clock, err := serverClock(e)
	if err != nil {
		return err
	}
	rootHash, err := server.Init(dir, signers, k, clock)
	if err != nil {
		return err
	}
	hosts, _ := fs.GetStringArray("host")
	hosts = certHosts(spec, hosts)
	fp, err := writeCertificate(dir, hosts, clock.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "server initialized in %s: the online key %s, the TLS certificate %s for %s\n",
		dir, server.OnlineKeyFile, certFile, strings.Join(hosts, ", "))
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
