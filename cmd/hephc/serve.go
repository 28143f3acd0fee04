package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"cuelang.org/go/cue"
	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
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
			serveHostFlags(fs) // servehost.go
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
	if err := serveInitIfNew(e, fs, dir, args); err != nil {
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
	reg, _ := fs.GetString("registry")
	if reg == "" {
		reg = spec.Registry
	}
	embedded, closeReg, err := spec.openRegistry(context.Background(), reg, dir, cfg)
	if err != nil {
		return err
	}
	defer closeReg()
	cert, err := spec.certificate(dir, time.Now()) // servetls.go
	if err != nil {
		return err
	}
	s, err := server.Open(dir, *cfg, clock)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := adoptBootTokens(ctx, e, fs, s); err != nil {
		return err
	}
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
		ln.Addr(), rootHash, certFingerprint(cert.Certificate[0]), registryDesc(cfg.RegistryName), dir)
	srv := &http.Server{
		Handler:           handler(s, embedded),
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
		After         string `json:"after"`
		UnsignedTests bool   `json:"unsignedTests"`
		Quorum        struct {
			Builds        int `json:"builds"`
			Reproductions int `json:"reproductions"`
		} `json:"quorum"`
	} `json:"promotion"`
	Page struct {
		Public bool `json:"public"`
	} `json:"page"`
	TLS *tlsFiles `json:"tls"` // servetls.go

	dir   string          // the configuration's directory
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
	spec.dir = configDir(e, args)
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
	cfg := &server.Config{Trust: s.trust, PublicPage: s.Page.Public, UnsignedTests: s.Promotion.UnsignedTests}
	if len(s.trust) == 0 {
		return nil, s.errorf("the server admits nothing without a trust policy: give the configuration's policy a trust: field (heph.#TrustPolicy), or --policy FILE")
	}
	after, err := time.ParseDuration(s.Promotion.After)
	if err != nil {
		return nil, s.errorf("promotion.after %q: %v", s.Promotion.After, err)
	}
	cfg.Promotion.After = after
	// One k: the quorum for stable is each trust policy's people with
	// promotion.quorum's counts, k who built each path and k who
	// reproduced it.
	for _, p := range s.trust {
		q := *p
		q.Source = p.Source + " (server.promotion.quorum)"
		q.Rules = []trust.Rule{{Builds: s.Promotion.Quorum.Builds, Reproductions: s.Promotion.Quorum.Reproductions, Pos: s.diag.Pos}}
		cfg.Promotion.Stable = append(cfg.Promotion.Stable, &q)
	}
	return cfg, nil
}
