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

// run is one verified test-result envelope.
type run struct {
	digest string
	env    []byte
	run    *trust.TestRun
}

// verifyTests checks each test-result envelope: signed by a key of a
// trust policy, a test-result statement.
func (s *Server) verifyTests(envs [][]byte) ([]run, error) {
	keys := trust.Keys{}
	for _, p := range append(slices.Clone(s.cfg.Trust), s.cfg.Promotion.Stable...) {
		for id, k := range p.Keys() {
			keys[id] = k
		}
	}
	var out []run
	for _, env := range envs {
		d := trust.EnvelopeDigest(env)
		ids, err := trust.VerifyTestResult(env, keys)
		if err != nil {
			return nil, fmt.Errorf("test result %s: %w", d, err)
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("test result %s: no valid signature by a key of the trust policy", d)
		}
		r, _, err := trust.ReadTestResult(env)
		if err != nil {
			return nil, fmt.Errorf("test result %s: %w", d, err)
		}
		out = append(out, run{digest: d, env: env, run: r})
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
			r, _, err := trust.ReadTestResult([]byte(env))
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("server database: test result %s: %w", d, err)
			}
			runs = append(runs, run{digest: d, env: []byte(env), run: r})
		}
		rows.Close()
	}
	latest := map[string]run{}
	for _, r := range runs {
		if !testsAny(r.run, content) {
			continue
		}
		key := r.run.Derivation
		cur, ok := latest[key]
		if !ok || r.run.Time.After(cur.run.Time) || r.run.Time.Equal(cur.run.Time) && r.digest > cur.digest {
			latest[key] = r
		}
	}
	var out []TestResult
	for _, key := range sortedKeys(latest) {
		r := latest[key].run
		tr := TestResult{Name: testName(r.Test.Path), Passed: r.Result == trust.TestPassed}
		if len(r.Failed) > 0 {
			tr.Detail = "failed: " + strings.Join(r.Failed, ", ")
		}
		out = append(out, tr)
	}
	slices.SortFunc(out, func(a, b TestResult) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
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
