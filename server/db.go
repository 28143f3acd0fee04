package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"
)

// DBFile is the server's state, in its data directory.
const DBFile = "server.sqlite"

const schemaVersion = 1

// schema is the server's state. Plain SQL that PostgreSQL accepts as it
// is: TEXT and BIGINT columns only, times in Unix seconds (UTC), ids
// assigned by the server inside its write transaction (no AUTOINCREMENT,
// no SERIAL), JSON kept as TEXT.
//
//	meta              schema version
//	packages          every package version published: who, when
//	paths             each store path of a package version: its OCI
//	                  manifest digest and size, content hash, statement
//	                  subject (JSON)
//	envelopes         the DSSE envelopes (attestations) of each path
//	channel_versions  each channel's content (JSON entries) at each
//	                  version: the channel's TUF version, with who and why
//	tuf               the current signed documents, one row a role
//	promotions        promotions, deprecations and rollbacks, with reasons
//	decisions         the last evaluation of each package version waiting
//	                  in testing: its excuses
//	issues, issue_comments   package issues
//	tokens            sha256 of each token, its name and role
//	audit             every write and every refused request, with who
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS packages (
	attr         TEXT NOT NULL,
	version      TEXT NOT NULL,
	published_by TEXT NOT NULL,
	published_at BIGINT NOT NULL,
	PRIMARY KEY (attr, version)
);
CREATE TABLE IF NOT EXISTS paths (
	path          TEXT PRIMARY KEY,
	attr          TEXT NOT NULL,
	version       TEXT NOT NULL,
	manifest      TEXT NOT NULL,
	manifest_size BIGINT NOT NULL,
	content_hash  TEXT NOT NULL,
	subject       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS paths_package ON paths(attr, version);
CREATE TABLE IF NOT EXISTS envelopes (
	path     TEXT NOT NULL,
	digest   TEXT NOT NULL,
	envelope TEXT NOT NULL,
	added_by TEXT NOT NULL,
	added_at BIGINT NOT NULL,
	PRIMARY KEY (path, digest)
);
CREATE TABLE IF NOT EXISTS channel_versions (
	channel TEXT NOT NULL,
	version BIGINT NOT NULL,
	content TEXT NOT NULL,
	at      BIGINT NOT NULL,
	who     TEXT NOT NULL,
	reason  TEXT NOT NULL,
	PRIMARY KEY (channel, version)
);
CREATE TABLE IF NOT EXISTS tuf (
	role TEXT PRIMARY KEY,
	doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS promotions (
	id           BIGINT PRIMARY KEY,
	attr         TEXT NOT NULL,
	version      TEXT NOT NULL,
	from_channel TEXT NOT NULL,
	to_channel   TEXT NOT NULL,
	at           BIGINT NOT NULL,
	who          TEXT NOT NULL,
	reasons      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
	attr    TEXT NOT NULL,
	version TEXT NOT NULL,
	at      BIGINT NOT NULL,
	excuses TEXT NOT NULL,
	PRIMARY KEY (attr, version)
);
CREATE TABLE IF NOT EXISTS issues (
	id        BIGINT PRIMARY KEY,
	attr      TEXT NOT NULL,
	version   TEXT NOT NULL,
	title     TEXT NOT NULL,
	opened_by TEXT NOT NULL,
	opened_at BIGINT NOT NULL,
	closed_by TEXT NOT NULL DEFAULT '',
	closed_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS issues_package ON issues(attr, version);
CREATE TABLE IF NOT EXISTS issue_comments (
	issue BIGINT NOT NULL,
	n     BIGINT NOT NULL,
	who   TEXT NOT NULL,
	at    BIGINT NOT NULL,
	text  TEXT NOT NULL,
	PRIMARY KEY (issue, n)
);
CREATE TABLE IF NOT EXISTS tokens (
	hash       TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	role       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
	id      BIGINT PRIMARY KEY,
	at      BIGINT NOT NULL,
	who     TEXT NOT NULL,
	action  TEXT NOT NULL,
	target  TEXT NOT NULL,
	outcome TEXT NOT NULL,
	detail  TEXT NOT NULL
);
`

// uriEscaper escapes what a "file:" URI would read otherwise: a data
// directory may hold '?' or '#'.
var uriEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

func openDB(dir string) (*sql.DB, error) {
	path := filepath.Join(dir, DBFile)
	// As the store's database: WAL (readers never wait for the writer),
	// a busy timeout, and write transactions that take the write lock
	// when they begin, so two writers are serialized, never deadlocked.
	dsn := "file:" + uriEscaper.Replace(path) + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(30000)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening server database %s: %w", path, err)
	}
	if _, err := db.Exec(schema + testsSchema + threatSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating server database %s: %w", path, err)
	}
	var v string
	err = db.QueryRow(`SELECT value FROM meta WHERE key = 'schema'`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := db.Exec(`INSERT INTO meta(key, value) VALUES ('schema', ?)`, fmt.Sprint(schemaVersion)); err != nil {
			db.Close()
			return nil, fmt.Errorf("initializing server database %s: %w", path, err)
		}
	case err != nil:
		db.Close()
		return nil, fmt.Errorf("reading server database %s: %w", path, err)
	case v != fmt.Sprint(schemaVersion):
		db.Close()
		return nil, fmt.Errorf("server database %s has schema version %s; this hephc knows %d", path, v, schemaVersion)
	}
	return db, nil
}

// nextID returns the next id of table (id column), inside tx.
func nextID(tx *sql.Tx, table string) (int64, error) {
	var id int64
	err := tx.QueryRow(`SELECT COALESCE(MAX(id), 0) + 1 FROM ` + table).Scan(&id)
	return id, err
}

func unix(t time.Time) int64 { return t.UTC().Unix() }

func fromUnix(s int64) time.Time { return time.Unix(s, 0).UTC() }

// audit records one write or refusal, inside tx when tx is not nil.
func (s *Server) audit(tx *sql.Tx, who, action, target, outcome, detail string) error {
	exec := func(tx *sql.Tx) error {
		id, err := nextID(tx, "audit")
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO audit(id, at, who, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			id, unix(s.clock.Now()), who, action, target, outcome, detail)
		return err
	}
	if tx != nil {
		return exec(tx)
	}
	return s.write(context.Background(), exec)
}

// write runs f in one write transaction, serialized with every other
// write of this process (and, by SQLite's write lock, of any other):
// all of it is committed or none.
func (s *Server) write(ctx context.Context, f func(tx *sql.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("server database: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("server database: committing: %w", err)
	}
	return nil
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Who     string    `json:"who"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail"`
}

// Audit returns the audit log, oldest first.
func (s *Server) Audit(ctx context.Context) ([]AuditEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, who, action, target, outcome, detail FROM audit ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var a AuditEntry
		var at int64
		if err := rows.Scan(&a.ID, &at, &a.Who, &a.Action, &a.Target, &a.Outcome, &a.Detail); err != nil {
			return nil, err
		}
		a.At = fromUnix(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Backup writes a consistent copy of the server's database to w while it
// serves (SQLite's VACUUM INTO: a snapshot of one read transaction). The
// copy opens as a server's database (put it at DBFile in a data
// directory with the same keys).
func (s *Server) Backup(ctx context.Context, w io.Writer) error {
	tmp, err := os.MkdirTemp(s.dir, "backup-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, DBFile)
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("backup: writing the copy: %w", err)
	}
	return nil
}
