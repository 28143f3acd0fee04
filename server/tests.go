package server

import (
	"context"
	"database/sql"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"hephc.dev/hephc/trust"
)

// The server's own TestResults, used when Config.Tests is nil: the
// in-toto test-result attestations (trust.TestRun, issue 17) it was given
// with a publish or later (AddTestResults), each signed by a key of one
// of the trust policies. A package version's tests are the runs that
// tested one of its paths — the same path and, when the run names one,
// the same content hash — one result per test derivation: its latest
// run (by the time it says it finished, then by envelope digest).

const testsSchema = `
CREATE TABLE IF NOT EXISTS test_results (
	digest   TEXT PRIMARY KEY,
	envelope TEXT NOT NULL,
	added_by TEXT NOT NULL,
	added_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS test_tested (
	digest       TEXT NOT NULL,
	path         TEXT NOT NULL,
	content_hash TEXT NOT NULL,
	PRIMARY KEY (digest, path)
);
CREATE INDEX IF NOT EXISTS test_tested_path ON test_tested(path);
`

type attestedTests struct{ s *Server }

// run is one test-result envelope, its statement read.
type run struct {
	digest string
	env    []byte
	run    *trust.TestRun
	// signed: a key of a trust policy signed it.
	signed bool
}

// testKeys are the keys of the trust policies: a test result one of
// them signed counts.
func (s *Server) testKeys() trust.Keys {
	keys := trust.Keys{}
	for _, p := range append(slices.Clone(s.cfg.Trust), s.cfg.Promotion.Stable...) {
		for id, k := range p.Keys() {
			keys[id] = k
		}
	}
	return keys
}

// readRun reads a test-result envelope and whether a key of keys signed
// it. One whose signature by such a key does not verify (changed after
// it was signed) is an error; one signed by no such key, or by none, is
// unsigned: kept and shown, counted only with Config.UnsignedTests.
func readRun(env []byte, keys trust.Keys) (run, error) {
	d := trust.EnvelopeDigest(env)
	if len(env) > trust.MaxEnvelopeSize {
		return run{}, fmt.Errorf("test result %s: %d bytes, more than %d", d, len(env), trust.MaxEnvelopeSize)
	}
	r, named, err := trust.ReadTestResult(env)
	if err != nil {
		return run{}, fmt.Errorf("test result %s: %w", d, err)
	}
	var valid []trust.KeyID
	if len(named) > 0 {
		if valid, err = trust.VerifyTestResult(env, keys); err != nil {
			return run{}, fmt.Errorf("test result %s: %w", d, err)
		}
	}
	for _, id := range named {
		if _, known := keys[id]; known && !slices.Contains(valid, id) {
			return run{}, fmt.Errorf("test result %s: the signature by %s does not verify: changed after it was signed", d, id)
		}
	}
	return run{digest: d, env: env, run: r, signed: len(valid) > 0}, nil
}

// verifyTests reads each test-result envelope (readRun).
func (s *Server) verifyTests(envs [][]byte) ([]run, error) {
	keys := s.testKeys()
	var out []run
	for _, env := range envs {
		r, err := readRun(env, keys)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func addTests(tx *sql.Tx, runs []run, who string, now time.Time) error {
	for _, r := range runs {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM test_results WHERE digest = ?`, r.digest).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		if _, err := tx.Exec(`INSERT INTO test_results(digest, envelope, added_by, added_at) VALUES (?, ?, ?, ?)`, r.digest, string(r.env), who, unix(now)); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, t := range r.run.Tested {
			if seen[t.Path] {
				continue
			}
			seen[t.Path] = true
			if _, err := tx.Exec(`INSERT INTO test_tested(digest, path, content_hash) VALUES (?, ?, ?)`, r.digest, t.Path, t.ContentHash); err != nil {
				return err
			}
		}
	}
	return nil
}

// Results returns the package's tests from the attestations held.
func (a *attestedTests) Results(ctx context.Context, p Package) ([]TestResult, error) {
	return a.resultsWith(ctx, p, nil, nil)
}

// resultsWith is Results with runs not yet stored and the content hashes
// of paths not yet stored (a publish in progress).
func (a *attestedTests) resultsWith(ctx context.Context, p Package, extra []run, hashes map[string]string) ([]TestResult, error) {
	runs := slices.Clone(extra)
	keys := a.s.testKeys()
	content := map[string]string{}
	for k, v := range hashes {
		content[k] = v
	}
	for _, pth := range p.Paths {
		if _, ok := content[pth]; !ok {
			var h string
			if err := a.s.db.QueryRowContext(ctx, `SELECT content_hash FROM paths WHERE path = ?`, pth).Scan(&h); err == nil {
				content[pth] = h
			}
		}
		rows, err := a.s.db.QueryContext(ctx, `SELECT r.digest, r.envelope FROM test_results r JOIN test_tested t ON t.digest = r.digest WHERE t.path = ? ORDER BY r.digest`, pth)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var d, env string
			if err := rows.Scan(&d, &env); err != nil {
				rows.Close()
				return nil, err
			}
			r, err := readRun([]byte(env), keys)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("server database: %w", err)
			}
			runs = append(runs, r)
		}
		rows.Close()
	}
	// The latest run of each test that counts, and the latest that does
	// not when it is newer: shown, as unsigned.
	latest, uncounted := map[string]run{}, map[string]run{}
	for _, r := range runs {
		if !testsAny(r.run, content) {
			continue
		}
		m := latest
		if !r.signed && !a.s.cfg.UnsignedTests {
			m = uncounted
		}
		if cur, ok := m[r.run.Derivation]; !ok || newer(r, cur) {
			m[r.run.Derivation] = r
		}
	}
	var out []TestResult
	for _, m := range []map[string]run{latest, uncounted} {
		for _, key := range sortedKeys(m) {
			r := m[key]
			if c, ok := latest[key]; ok && !r.signed && !a.s.cfg.UnsignedTests && !newer(r, c) {
				continue
			}
			tr := TestResult{Name: testName(r.run.Test.Path), Passed: r.run.Result == trust.TestPassed}
			tr.Unsigned = !r.signed && !a.s.cfg.UnsignedTests
			if len(r.run.Failed) > 0 {
				tr.Detail = "failed: " + strings.Join(r.run.Failed, ", ")
			}
			out = append(out, tr)
		}
	}
	slices.SortFunc(out, func(a, b TestResult) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return cmpBool(a.Unsigned, b.Unsigned)
	})
	return out, nil
}

// newer orders runs by the time they say they finished, then by digest.
func newer(r, than run) bool {
	return r.run.Time.After(than.run.Time) || r.run.Time.Equal(than.run.Time) && r.digest > than.digest
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// testsAny reports whether r tested one of the paths of content (path →
// content hash) with those bytes.
func testsAny(r *trust.TestRun, content map[string]string) bool {
	for _, t := range r.Tested {
		h, ok := content[t.Path]
		if ok && (t.ContentHash == "" || t.ContentHash == h) {
			return true
		}
	}
	return false
}

// testName is a test's name: its output path's name.
func testName(p string) string {
	b := path.Base(p)
	if _, name, ok := strings.Cut(b, "-"); ok {
		return name
	}
	return b
}

// AddTestResults keeps test-result attestations (a test run again after
// a publish), as who, then evaluates the rules again.
func (s *Server) AddTestResults(ctx context.Context, who string, envs [][]byte) (int, error) {
	runs, err := s.verifyTests(envs)
	if err != nil {
		s.audit(nil, who, "test results", fmt.Sprintf("%d envelopes", len(envs)), "refused", err.Error())
		return 0, &RefusedError{What: "test results", Reasons: []string{err.Error()}}
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := addTests(tx, runs, who, s.clock.Now()); err != nil {
			return err
		}
		return s.audit(tx, who, "test results", fmt.Sprintf("%d envelopes", len(runs)), "ok", "")
	})
	if err != nil {
		return 0, err
	}
	err = s.afterEvent(ctx)
	return len(runs), err
}
