package gomod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
)

// knownSumDBs are the verifier keys of the checksum databases GOSUMDB may
// name by host alone (cmd/go's list).
var knownSumDBs = map[string]string{
	"sum.golang.org": "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
}

// SumDB is the checksum database GOSUMDB names, reached as the go command
// reaches it: through the first module proxy that serves it
// (PROXY/sumdb/NAME/supported), else directly; the signed tree it has
// seen is kept in a directory, so it can never be rolled back.
type SumDB struct {
	Name    string
	noSumDB string // GONOSUMDB patterns
	client  *sumdb.Client
	ops     *sumdbOps
}

// NewSumDB returns the checksum database of env.GOSUMDB, keeping its state
// in dir; nil when GOSUMDB=off.
func NewSumDB(env Env, proxy *Proxy, dir string) (*SumDB, error) {
	gosumdb := env.GOSUMDB
	if gosumdb == "off" {
		return nil, nil
	}
	if gosumdb == "sum.golang.google.cn" {
		gosumdb = "sum.golang.org https://sum.golang.google.cn"
	}
	f := strings.Fields(gosumdb)
	if len(f) == 0 || len(f) > 2 {
		return nil, fmt.Errorf("GOSUMDB=%q: want KEY or KEY URL", env.GOSUMDB)
	}
	if k, ok := knownSumDBs[f[0]]; ok {
		f[0] = k
	}
	verifier, err := note.NewVerifier(f[0])
	if err != nil {
		return nil, fmt.Errorf("GOSUMDB=%q: %w", env.GOSUMDB, err)
	}
	name := verifier.Name()
	direct, err := url.Parse("https://" + name)
	if err != nil || strings.HasSuffix(name, "/") || direct.Host == "" || direct.RawQuery != "" || direct.Fragment != "" || direct.User != nil || !filepath.IsLocal(name) {
		return nil, fmt.Errorf("GOSUMDB=%q: invalid database name %q (want host[/path])", env.GOSUMDB, name)
	}
	ops := &sumdbOps{key: f[0], name: name, direct: "https://" + name, proxy: proxy, dir: dir}
	if len(f) == 2 {
		u, err := url.Parse(f[1])
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("GOSUMDB=%q: %q is not an http(s) URL", env.GOSUMDB, f[1])
		}
		ops.base = strings.TrimSuffix(f[1], "/")
	}
	c := sumdb.NewClient(ops)
	c.SetGONOSUMDB(env.GONOSUMDB)
	return &SumDB{Name: name, noSumDB: env.GONOSUMDB, client: c, ops: ops}, nil
}

// Skips reports whether GONOSUMDB (or GOPRIVATE) exempts a module.
func (db *SumDB) Skips(path string) bool {
	return module.MatchPrefixPatterns(db.noSumDB, path)
}

// Check checks that the checksum database records sum as the h1: sum of
// path@version's zip. A module GONOSUMDB exempts is not checked.
func (db *SumDB) Check(path, version, sum string) error {
	if db.Skips(path) {
		return nil
	}
	want, err := db.Lookup(path, version)
	if err != nil {
		return err
	}
	if want != sum {
		return fmt.Errorf("SECURITY ERROR: %s@%s: the module proxy served content with sum %s, but the checksum database %s records %s; nothing was written", path, version, sum, db.Name, want)
	}
	return nil
}

// Lookup returns the h1: sum the checksum database records for
// path@version's zip.
func (db *SumDB) Lookup(path, version string) (string, error) {
	lines, err := db.client.Lookup(path, version)
	if err != nil {
		if msg := db.ops.securityError(); msg != "" {
			return "", fmt.Errorf("SECURITY ERROR: checksum database %s: %s", db.Name, msg)
		}
		if errors.Is(err, errNotFound) || strings.Contains(err.Error(), "not found") {
			return "", &NotFoundError{What: path + "@" + version, Msg: "the checksum database " + db.Name + " has no record of it"}
		}
		return "", fmt.Errorf("checking %s@%s against the checksum database %s: %w", path, version, db.Name, err)
	}
	prefix := path + " " + version + " "
	for _, l := range lines {
		if sum, ok := strings.CutPrefix(l, prefix); ok {
			return sum, nil
		}
	}
	return "", fmt.Errorf("checking %s@%s: the checksum database %s has no h1: sum for it", path, version, db.Name)
}

// sumdbOps gives the sumdb client the network and a directory.
type sumdbOps struct {
	key, name string
	direct    string // https://NAME
	proxy     *Proxy
	dir       string

	once    sync.Once
	base    string // where the database is read: a proxy's sumdb/NAME, or direct
	baseErr error

	mu       sync.Mutex
	security string
}

var _ sumdb.ClientOps = (*sumdbOps)(nil)

// initBase finds how to reach the database: through the first proxy that
// says it supports it; on not-found answers the next; else directly.
func (o *sumdbOps) initBase() {
	if o.base != "" {
		return
	}
	err := o.proxy.each("sumdb "+o.name, func(base string) error {
		if _, err := o.proxy.get(context.Background(), base+"/sumdb/"+o.name+"/supported", maxSmallFile); err != nil {
			return err
		}
		o.base = base + "/sumdb/" + o.name
		return nil
	})
	var nf *NotFoundError
	switch {
	case err == nil:
	case errors.As(err, &nf):
		o.base = o.direct
	default:
		o.baseErr = err
	}
}

func (o *sumdbOps) ReadRemote(path string) ([]byte, error) {
	o.once.Do(o.initBase)
	if o.baseErr != nil {
		return nil, o.baseErr
	}
	return o.proxy.get(context.Background(), o.base+path, maxSmallFile)
}

func (o *sumdbOps) ReadConfig(file string) ([]byte, error) {
	if file == "key" {
		return []byte(o.key), nil
	}
	b, err := os.ReadFile(o.path("config", file))
	if errors.Is(err, os.ErrNotExist) {
		return []byte{}, nil
	}
	return b, err
}

func (o *sumdbOps) WriteConfig(file string, old, new []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.path("config", file)
	cur, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if !bytes.Equal(cur, old) {
		return sumdb.ErrWriteConflict
	}
	return writeFileAtomic(p, new)
}

func (o *sumdbOps) ReadCache(file string) ([]byte, error) {
	return os.ReadFile(o.path("cache", file))
}

func (o *sumdbOps) WriteCache(file string, data []byte) {
	_ = writeFileAtomic(o.path("cache", file), data) // a cache: losing it costs a fetch
}

func (o *sumdbOps) Log(msg string) {}

func (o *sumdbOps) SecurityError(msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.security == "" {
		for _, l := range strings.Split(msg, "\n") {
			if l = strings.TrimSpace(l); l != "" && l != "SECURITY ERROR" {
				o.security = firstLine(l)
				break
			}
		}
	}
}

func (o *sumdbOps) securityError() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.security
}

// path is where a file the client names lives below the directory; the
// client's names are NAME/... and never leave it.
func (o *sumdbOps) path(kind, file string) string {
	if !filepath.IsLocal(file) {
		file = "invalid"
	}
	return filepath.Join(o.dir, kind, filepath.FromSlash(file))
}

// writeFileAtomic writes b to p through a temporary file and a rename.
func writeFileAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
