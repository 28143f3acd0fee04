// Package server is the package server's library (issue 18): its state
// in SQLite (packages, channels and their versions, promotions with
// reasons, issues, tokens, the audit log), the channels as TUF metadata
// (channel), promotion by rule on a timer and on every event, publishing
// checked against the registry's blobs, the trust policy and the tests,
// an http.Handler for the JSON API and a Client for it. The clock is
// injected. It prints nothing; the CLI (hephc serve …) is a thin layer
// over Open, Handler, Run and Client.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/trust"
)

// Clock says what time it is: the system's, or a test's.
type Clock interface{ Now() time.Time }

// SystemClock is the system's clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }

// DefaultAfter is the minimum time in testing (#Server.promotion.after).
const DefaultAfter = 168 * time.Hour

// Config is what the configuration's `server:` and the policy give.
type Config struct {
	// Promotion are the rules from testing to stable.
	Promotion Promotion
	// Trust are the policies a publish must meet (each must hold), with
	// the attestations it carries: at least one.
	Trust []*trust.Policy
	// Registry holds the packages' OCI artifacts.
	Registry Registry
	// Tests answers whether a package version's tests passed; nil: the
	// test-result attestations the server was given (tests.go).
	Tests TestResults
	// UnsignedTests counts the test results no key of a trust policy
	// signed toward "every test passed"; by default they are kept and
	// shown, never counted.
	UnsignedTests bool
	// Expiry of the channel metadata; zero fields take channel.DefaultExpiry's.
	Expiry channel.Expiry
	// Tick is how often Run evaluates the rules and re-signs the
	// metadata (default a minute).
	Tick time.Duration
	// PrivateReads makes reading (channels, issues, metadata) need a
	// token of the reader role; health stays open.
	PrivateReads bool
	// PublicPage lets anyone read the web page (page.go); by default it
	// needs a reader token, as PrivateReads reads do.
	PublicPage bool
	// RegistryName is where publishers push and clients substitute from
	// (oci://HOST/REPOSITORY), said in GET /health.
	RegistryName string
}

// Promotion are the rules a package version in testing must meet to
// move to stable.
type Promotion struct {
	// After is the minimum time in testing (DefaultAfter when zero).
	After time.Duration
	// Stable are the trust policies whose quorum stable needs (k distinct
	// people built it and k reproduced it): judged by trust.Judge on the
	// attestations the server holds; each must hold. None: no quorum
	// beyond the publish's.
	Stable []*trust.Policy
}

func (c *Config) fill() error {
	if c.Promotion.After == 0 {
		c.Promotion.After = DefaultAfter
	}
	if c.Promotion.After < 0 {
		return fmt.Errorf("server: promotion after %s is negative", c.Promotion.After)
	}
	d := channel.DefaultExpiry
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.Expiry.Root, d.Root}, {&c.Expiry.Targets, d.Targets}, {&c.Expiry.Channel, d.Channel},
		{&c.Expiry.Snapshot, d.Snapshot}, {&c.Expiry.Timestamp, d.Timestamp},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.Tick == 0 {
		c.Tick = time.Minute
	}
	if len(c.Trust) == 0 {
		return errors.New("server: no trust policy: a server admits nothing without one")
	}
	if c.Registry == nil {
		return errors.New("server: no registry for the packages' artifacts")
	}
	return nil
}

// OnlineKeyFile is the server's online key in its data directory: it
// signs the channels, the snapshot and the timestamp.
const OnlineKeyFile = "online.key"

// RootFile is the signed root, in the data directory, for clients and
// for the administrators who hold the offline keys.
const RootFile = "root.json"

// Server is one package server's state.
type Server struct {
	dir    string
	cfg    Config
	clock  Clock
	db     *sql.DB
	online channel.Signer

	mu sync.Mutex // serializes this process's writes

	// fault, when set (tests), is called between the steps of a publish
	// or a promotion: an error stands for the process dying there.
	fault func(step string) error
}

// Init makes a new server in dir: the database, the online key
// (OnlineKeyFile) and version 1 of the channel metadata, whose root and
// top-level targets are signed by every rootKey, threshold of them
// needed (the offline keys: only their public halves stay). It returns
// the root's hash for clients to pin. dir must not hold a server.
func Init(dir string, rootKeys []channel.Signer, threshold int, clock Clock) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("server init: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); err == nil {
		return "", fmt.Errorf("server init: %s already holds a server (%s)", dir, DBFile)
	}
	k, err := trust.GenerateKey("hephc-server-online", rand.Reader)
	if err != nil {
		return "", fmt.Errorf("server init: %w", err)
	}
	repo, err := channel.Init(rootKeys, threshold, trustSigner{k}, clock.Now(), channel.DefaultExpiry)
	if err != nil {
		return "", fmt.Errorf("server init: %w", err)
	}
	if err := trust.WriteSecretKeyFile(filepath.Join(dir, OnlineKeyFile), k, nil, rand.Reader); err != nil {
		return "", fmt.Errorf("server init: %w", err)
	}
	db, err := openDB(dir)
	if err != nil {
		return "", err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if err := saveRepo(tx, repo); err != nil {
		return "", err
	}
	now := unix(clock.Now())
	for _, ch := range channel.Names {
		if _, err := tx.Exec(`INSERT INTO channel_versions(channel, version, content, at, who, reason) VALUES (?, 1, '[]', ?, 'init', 'created')`, ch, now); err != nil {
			return "", err
		}
	}
	if err := tx.Commit(); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, RootFile), repo.Root, 0o644); err != nil {
		return "", fmt.Errorf("server init: %w", err)
	}
	return channel.RootHash(repo.Root), nil
}

// Signer returns a channel.Signer over a hephc secret key (trust's key
// files): how the root keys given to Init are read.
func Signer(k *trust.SecretKey) channel.Signer { return trustSigner{k} }

// trustSigner signs with a hephc secret key.
type trustSigner struct{ k *trust.SecretKey }

func (t trustSigner) PublicKey() ed25519.PublicKey { return t.k.Public().Raw() }
func (t trustSigner) Sign(msg []byte) []byte       { return t.k.Sign(msg) }

// Open opens the server Init made in dir.
func Open(dir string, cfg Config, clock Clock) (*Server, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); err != nil {
		return nil, fmt.Errorf("server: %s holds no server (hephc serve init makes one): %w", dir, err)
	}
	k, err := trust.ReadSecretKeyFile(filepath.Join(dir, OnlineKeyFile), func() ([]byte, error) {
		return nil, errors.New("the online key must not need a passphrase: the server signs unattended")
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	db, err := openDB(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, cfg: cfg, clock: clock, db: db, online: trustSigner{k}}
	if s.cfg.Tests == nil {
		s.cfg.Tests = &attestedTests{s}
	}
	return s, nil
}

// Close closes the database.
func (s *Server) Close() error { return s.db.Close() }

func (s *Server) step(name string) error {
	if s.fault != nil {
		return s.fault(name)
	}
	return nil
}

// saveRepo writes every document of r.
func saveRepo(tx *sql.Tx, r *channel.Repo) error {
	roots, err := json.Marshal(r.Roots)
	if err != nil {
		return err
	}
	docs := map[string][]byte{"root": r.Root, "roots": roots, "targets": r.Targets, "snapshot": r.Snapshot, "timestamp": r.Timestamp}
	for ch, b := range r.Channels {
		docs[ch] = b
	}
	for _, role := range sortedKeys(docs) {
		if _, err := tx.Exec(`DELETE FROM tuf WHERE role = ?`, role); err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO tuf(role, doc) VALUES (?, ?)`, role, string(docs[role])); err != nil {
			return err
		}
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// loadRepo reads the current documents.
func loadRepo(ctx context.Context, q querier) (*channel.Repo, error) {
	rows, err := q.QueryContext(ctx, `SELECT role, doc FROM tuf ORDER BY role`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	r := &channel.Repo{Channels: map[string][]byte{}}
	for rows.Next() {
		var role, doc string
		if err := rows.Scan(&role, &doc); err != nil {
			return nil, err
		}
		switch role {
		case "root":
			r.Root = []byte(doc)
		case "roots":
			if err := json.Unmarshal([]byte(doc), &r.Roots); err != nil {
				return nil, fmt.Errorf("server database: the earlier roots: %w", err)
			}
		case "targets":
			r.Targets = []byte(doc)
		case "snapshot":
			r.Snapshot = []byte(doc)
		case "timestamp":
			r.Timestamp = []byte(doc)
		default:
			r.Channels[role] = []byte(doc)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if r.Root == nil || r.Timestamp == nil {
		return nil, errors.New("server database: the channel metadata is missing")
	}
	return r, nil
}

// RootHash returns the hash of the root clients pin.
func (s *Server) RootHash(ctx context.Context) (string, error) {
	m, err := s.Metadata(ctx)
	if err != nil {
		return "", err
	}
	return channel.RootHash(m.Root), nil
}

// Metadata returns the current signed channel metadata.
func (s *Server) Metadata(ctx context.Context) (*channel.Repo, error) {
	return loadRepo(ctx, s.db)
}

// content returns channel ch's current version and entries.
func content(ctx context.Context, q querier, ch string) (int64, []channel.Entry, error) {
	var v int64
	var c string
	err := q.QueryRowContext(ctx, `SELECT version, content FROM channel_versions WHERE channel = ? ORDER BY version DESC LIMIT 1`, ch).Scan(&v, &c)
	if err != nil {
		return 0, nil, fmt.Errorf("server database: channel %s: %w", ch, err)
	}
	var es []channel.Entry
	if err := json.Unmarshal([]byte(c), &es); err != nil {
		return 0, nil, fmt.Errorf("server database: channel %s version %d: %w", ch, v, err)
	}
	return v, es, nil
}

// move writes new contents of the channels in changes, as new versions
// of them and of their signed metadata, in tx: the database and the
// documents served change together or not at all.
func (s *Server) move(ctx context.Context, tx *sql.Tx, changes map[string][]channel.Entry, who, reason string) error {
	repo, err := loadRepo(ctx, tx)
	if err != nil {
		return err
	}
	next, err := repo.Update(s.online, changes, s.clock.Now(), s.cfg.Expiry)
	if err != nil {
		return err
	}
	vers, err := next.Versions()
	if err != nil {
		return err
	}
	for _, ch := range sortedKeys(changes) {
		es := changes[ch]
		channel.SortEntries(es)
		if es == nil {
			es = []channel.Entry{}
		}
		b, err := json.Marshal(es)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO channel_versions(channel, version, content, at, who, reason) VALUES (?, ?, ?, ?, ?, ?)`,
			ch, vers[ch], string(b), unix(s.clock.Now()), who, reason); err != nil {
			return fmt.Errorf("server database: channel %s version %d: %w", ch, vers[ch], err)
		}
		if err := s.step("move:" + ch); err != nil {
			return err
		}
	}
	return saveRepo(tx, next)
}

// Refresh re-signs the online metadata that is past half its validity
// (the timer calls it): new versions, the same content.
func (s *Server) Refresh(ctx context.Context) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		repo, err := loadRepo(ctx, tx)
		if err != nil {
			return err
		}
		next, changed, err := repo.Refresh(s.online, s.clock.Now(), s.cfg.Expiry)
		if err != nil || !changed {
			return err
		}
		old, _ := repo.Versions()
		vers, err := next.Versions()
		if err != nil {
			return err
		}
		for _, ch := range channel.Names {
			if vers[ch] == old[ch] {
				continue
			}
			_, es, err := content(ctx, tx, ch)
			if err != nil {
				return err
			}
			b, _ := json.Marshal(es)
			if _, err := tx.Exec(`INSERT INTO channel_versions(channel, version, content, at, who, reason) VALUES (?, ?, ?, ?, 'server', 're-signed before expiry')`,
				ch, vers[ch], string(b), unix(s.clock.Now())); err != nil {
				return err
			}
		}
		return saveRepo(tx, next)
	})
}

// ResignOffline has the offline root keys (at least the root's
// threshold of them) sign new versions of the root and the top-level
// targets, valid for their full term again: what the administrators do
// before Health says they expire. It writes RootFile anew; clients
// that pinned an older root follow the chain.
func (s *Server) ResignOffline(ctx context.Context, who string, rootKeys []channel.Signer) error {
	var root []byte
	err := s.write(ctx, func(tx *sql.Tx) error {
		repo, err := loadRepo(ctx, tx)
		if err != nil {
			return err
		}
		next, err := repo.Resign(rootKeys, s.online, s.clock.Now(), s.cfg.Expiry)
		if err != nil {
			return err
		}
		if err := saveRepo(tx, next); err != nil {
			return err
		}
		root = next.Root
		v, _ := next.Versions()
		return s.audit(tx, who, "resign offline", "root, targets", "ok", fmt.Sprintf("root version %d, targets version %d", v["root"], v["targets"]))
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, RootFile), root, 0o644); err != nil {
		return fmt.Errorf("resigned, but writing %s: %w", RootFile, err)
	}
	return nil
}

// Tick evaluates the promotion rules and re-signs what needs it: what
// Run does on its timer.
func (s *Server) Tick(ctx context.Context) error {
	// Re-signing first and whatever the rules do: a failing evaluation
	// must not let the timestamp expire.
	rerr := s.Refresh(ctx)
	_, eerr := s.Evaluate(ctx)
	return errors.Join(rerr, eerr)
}

// Run calls Tick every Config.Tick until ctx is done; onErr (may be nil)
// hears each error.
func (s *Server) Run(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
