package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"
)

// schemaVersion is the version of the database schema below; Open refuses
// a database written by a newer hephc.
const schemaVersion = 1

// schema is the store database. It is plain SQLite in WAL mode, so the
// sqlite3 tool can inspect it while hephc runs:
//
//	paths        one row per valid store path: its content hash (blake3
//	             over the canonical tree serialization, docs/store.md),
//	             size, file count, the derivation that built it and when
//	             it was registered; ca is a fixed-output path's pin.
//	refs         the runtime references of each path, found by scanning
//	             its content for the hashes of its build inputs.
//	derivations  every derivation the store has been asked to realize, as
//	             JSON, with where it was written (attr, pos) last time.
//	builds       one row per build attempt: its log and how it ended.
//	generations  each profile's generations: a toplevel path, when, the
//	             configuration's content hash, the closure's size.
//	profiles     each profile's current generation.
//	roots        indirect GC roots: symlinks such as ./result that point
//	             into the store and keep their target alive while they do.
//
// A path is registered only after its content is complete and in place;
// nothing else marks it valid.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS paths (
	id           INTEGER PRIMARY KEY,
	path         TEXT NOT NULL UNIQUE,
	content_hash TEXT NOT NULL,
	size         INTEGER NOT NULL,
	files        INTEGER NOT NULL,
	deriver      TEXT NOT NULL,
	registered   INTEGER NOT NULL,
	ca           TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS refs (
	referrer  INTEGER NOT NULL REFERENCES paths(id) ON DELETE CASCADE,
	reference INTEGER NOT NULL REFERENCES paths(id) ON DELETE RESTRICT,
	PRIMARY KEY (referrer, reference)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_reference ON refs(reference);
CREATE TABLE IF NOT EXISTS derivations (
	hash TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	json BLOB NOT NULL,
	attr TEXT NOT NULL DEFAULT '',
	pos  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS builds (
	id       INTEGER PRIMARY KEY,
	drv      TEXT NOT NULL,
	started  INTEGER NOT NULL,
	finished INTEGER NOT NULL,
	status   TEXT NOT NULL,
	log      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_drv ON builds(drv);
CREATE TABLE IF NOT EXISTS generations (
	profile      TEXT NOT NULL,
	number       INTEGER NOT NULL,
	toplevel     TEXT NOT NULL,
	created      INTEGER NOT NULL,
	config_hash  TEXT NOT NULL,
	config       TEXT NOT NULL DEFAULT '',
	closure_size INTEGER NOT NULL,
	PRIMARY KEY (profile, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
	name    TEXT PRIMARY KEY,
	current INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS roots (
	link TEXT PRIMARY KEY
);
`

// DBFile is the store's database, in its directory: a store exists when
// it does.
const DBFile = "db.sqlite"

// recordsKey is the meta row that says the records on disk (ondisk.go)
// hold everything the database knows: set when the database is made, or
// once an older database's records have been written.
const recordsKey = "records"

// checkDBFile refuses a database file that is missing or empty (0 bytes)
// beside a store that holds paths: SQLite would make a new, empty one.
func (s *Store) checkDBFile() error {
	path := filepath.Join(s.Dir, DBFile)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if s.holdsPaths() {
			return &DatabaseError{DB: path, Problem: "is missing"}
		}
	case err != nil:
		return fmt.Errorf("opening store database: %w", err)
	case fi.Size() == 0:
		if s.holdsPaths() {
			return &DatabaseError{DB: path, Problem: "is empty (0 bytes)"}
		}
	}
	return nil
}

// holdsPaths reports whether the store holds anything a database would
// know of: an entry in store/ or a record in info/.
func (s *Store) holdsPaths() bool {
	for _, sub := range []string{"store", infoDir} {
		f, err := os.Open(filepath.Join(s.Dir, sub))
		if err != nil {
			continue
		}
		names, _ := f.Readdirnames(1)
		f.Close()
		if len(names) > 0 {
			return true
		}
	}
	return false
}

// uriEscaper escapes what a "file:" URI would read otherwise: the store's
// directory may hold '?' or '#', which would end its path.
var uriEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// DBURI is the "file:" URI of the database of the store in dir, its path
// escaped, for opening it beside the store (options follow a '?').
func DBURI(dir string) string {
	return "file:" + uriEscaper.Replace(filepath.Join(dir, DBFile))
}

// schemaObjects are the tables and indexes schema makes.
var schemaObjects = func() []any {
	var names []any
	for _, m := range regexp.MustCompile(`(?:TABLE|INDEX) IF NOT EXISTS (\w+)`).FindAllStringSubmatch(schema, -1) {
		names = append(names, m[1])
	}
	return names
}()

// createSchema makes what of schema the database lacks. Parsing and
// running schema costs more than opening the database; a store that has
// it all, the usual case, only counts its objects.
func createSchema(db *sql.DB) error {
	var n int
	err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name IN (?`+strings.Repeat(",?", len(schemaObjects)-1)+`)`, schemaObjects...).Scan(&n)
	if err == nil && n == len(schemaObjects) {
		return nil
	}
	_, err = db.Exec(schema)
	return err
}

func openDB(dir string) (*sql.DB, error) {
	path := filepath.Join(dir, DBFile)
	// _txlock=immediate: a write transaction takes the write lock when it
	// begins, so two processes never deadlock upgrading read locks.
	dsn := DBURI(dir) + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(30000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening store database %s: %w", path, err)
	}
	if err := createSchema(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating store database %s: %w", path, err)
	}
	var v string
	err = db.QueryRow(`SELECT value FROM meta WHERE key = 'schema'`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := db.Exec(`INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)`, fmt.Sprint(schemaVersion)); err != nil {
			db.Close()
			return nil, fmt.Errorf("initializing store database %s: %w", path, err)
		}
	case err != nil:
		db.Close()
		return nil, fmt.Errorf("reading store database %s: %w", path, err)
	case v != fmt.Sprint(schemaVersion):
		db.Close()
		return nil, fmt.Errorf("store database %s has schema version %s; this hephc knows %d", path, v, schemaVersion)
	}
	return db, nil
}

// PathInfo is what the store knows of a valid path.
type PathInfo struct {
	Path        Path
	ContentHash OutputHash
	Size        int64
	Files       int
	Deriver     DrvHash
	Registered  int64 // Unix seconds
	// CA is a fixed-output path's pin (h1:… or blake3:…), "" otherwise.
	CA         string
	References []Path // sorted
}

// QueryPathInfo returns what the store knows of p, or ok=false when p is
// not valid.
func (s *Store) QueryPathInfo(ctx context.Context, p Path) (info *PathInfo, ok bool, err error) {
	defer s.annotate(&err)
	var (
		id      int64
		content string
		deriver string
	)
	info = &PathInfo{Path: p}
	q, err := s.stmt(ctx, `SELECT id, content_hash, size, files, deriver, registered, ca FROM paths WHERE path = ?`)
	if err != nil {
		return nil, false, fmt.Errorf("querying %s: %w", p, err)
	}
	err = q.QueryRowContext(ctx, p.String()).
		Scan(&id, &content, &info.Size, &info.Files, &deriver, &info.Registered, &info.CA)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("querying %s: %w", p, err)
	}
	if info.ContentHash, err = ParseOutputHash(content); err != nil {
		return nil, false, fmt.Errorf("querying %s: %w", p, err)
	}
	if info.Deriver, err = ParseDrvHash(deriver); err != nil {
		return nil, false, fmt.Errorf("querying %s: %w", p, err)
	}
	q, err = s.stmt(ctx, `SELECT p.path FROM refs r JOIN paths p ON p.id = r.reference WHERE r.referrer = ? ORDER BY p.path`)
	if err != nil {
		return nil, false, fmt.Errorf("querying references of %s: %w", p, err)
	}
	rows, err := q.QueryContext(ctx, id)
	if err != nil {
		return nil, false, fmt.Errorf("querying references of %s: %w", p, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, false, err
		}
		rp, err := ParsePath(r)
		if err != nil {
			return nil, false, fmt.Errorf("querying references of %s: %w", p, err)
		}
		info.References = append(info.References, rp)
	}
	return info, true, rows.Err()
}

// ValidPaths returns which of ps are valid, in one query (the paths go as
// one JSON array, so the statement is prepared once).
func (s *Store) ValidPaths(ctx context.Context, ps []Path) (_ map[Path]bool, err error) {
	defer s.annotate(&err)
	valid := make(map[Path]bool, len(ps))
	if len(ps) == 0 {
		return valid, nil
	}
	byString := make(map[string]Path, len(ps))
	list := make([]string, len(ps))
	for i, p := range ps {
		list[i] = p.String()
		byString[list[i]] = p
	}
	arg, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	q, err := s.stmt(ctx, `SELECT path FROM paths WHERE path IN (SELECT value FROM json_each(?))`)
	if err != nil {
		return nil, fmt.Errorf("querying valid paths: %w", err)
	}
	rows, err := q.QueryContext(ctx, string(arg))
	if err != nil {
		return nil, fmt.Errorf("querying valid paths: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		valid[byString[p]] = true
	}
	return valid, rows.Err()
}

// ValidPathList returns every valid path, sorted.
func (s *Store) ValidPathList(ctx context.Context) (_ []Path, err error) {
	defer s.annotate(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT path FROM paths ORDER BY path`)
	if err != nil {
		return nil, fmt.Errorf("listing valid paths: %w", err)
	}
	defer rows.Close()
	var ps []Path
	for rows.Next() {
		var str string
		if err := rows.Scan(&str); err != nil {
			return nil, err
		}
		p, err := ParsePath(str)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, rows.Err()
}

// stmt returns the statement query, prepared once per Store and closed
// with its database.
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if q, ok := s.stmts.Load(query); ok {
		return q.(*sql.Stmt), nil
	}
	q, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if old, loaded := s.stmts.LoadOrStore(query, q); loaded {
		q.Close()
		return old.(*sql.Stmt), nil
	}
	return q, nil
}
