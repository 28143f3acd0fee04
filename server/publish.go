package server

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// Package names one package version and its store paths.
type Package struct {
	Attr    string   `json:"attr"`
	Version string   `json:"version"`
	Paths   []string `json:"paths"`
}

// TestResult is one test of a package version and how it ended.
type TestResult struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail,omitempty"`
	// Unsigned: signed by no key of a trust policy, and not counted
	// (Config.UnsignedTests counts it); shown only.
	Unsigned bool `json:"unsigned,omitempty"`
}

// counted are the results that count toward "every test passed", and
// how many do not.
func counted(results []TestResult) (out []TestResult, unsigned int) {
	for _, r := range results {
		if r.Unsigned {
			unsigned++
		} else {
			out = append(out, r)
		}
	}
	return out, unsigned
}

// TestResults answers which tests a package version has and whether
// each passed: implemented over the published test-result attestations
// (issue "Tests are part of every package"). A package with no tests has
// none failed.
type TestResults interface {
	Results(ctx context.Context, p Package) ([]TestResult, error)
}

// PublishRequest puts a package version into testing: each of its store
// paths by the digest of its OCI manifest (already pushed to the
// registry), with the attestations (DSSE envelopes) of it.
type PublishRequest struct {
	Attr    string          `json:"attr"`
	Version string          `json:"version"`
	Paths   []PublishedPath `json:"paths"`
	// Tests are test-result attestations (DSSE envelopes of in-toto
	// test-result statements) of its paths, kept when Config.Tests is
	// the server's own.
	Tests [][]byte `json:"tests,omitempty"`
}

// PublishedPath is one store path of a publish.
type PublishedPath struct {
	Path      string   `json:"path"`
	Manifest  string   `json:"manifest"`
	Envelopes [][]byte `json:"envelopes"`
}

// RefusedError is a request the rules refuse (HTTP 409): why, each
// reason in plain words.
type RefusedError struct {
	What    string
	Reasons []string
}

func (e *RefusedError) Error() string {
	return e.What + ": refused: " + strings.Join(e.Reasons, "; ")
}

// maxManifest bounds a path's manifest, as registry/ does.
const maxManifest = 1 << 20

// checked is one path of a publish after its blobs were checked.
type checked struct {
	entry   channel.Entry
	subject trust.Subject
	counted [][]byte
}

// checkPath reads the path's manifest and layer from the registry and
// checks them: the manifest is its digest and the path's, the layer is
// its digest and size, and uncompressed it is the diff id the
// attestations bind.
func (s *Server) checkPath(ctx context.Context, p PublishedPath) (*checked, error) {
	sp, err := store.ParsePath(p.Path)
	if err != nil {
		return nil, err
	}
	want, err := v1.NewHash(p.Manifest)
	if err != nil || want.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s: manifest digest %q is not sha256:<hex>", p.Path, p.Manifest)
	}
	raw, err := s.cfg.Registry.Manifest(ctx, p.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Path, err)
	}
	if len(raw) > maxManifest {
		return nil, fmt.Errorf("%s: manifest %s is over %d bytes", p.Path, p.Manifest, maxManifest)
	}
	if got := sha256.Sum256(raw); hex.EncodeToString(got[:]) != want.Hex {
		return nil, fmt.Errorf("%s: the registry's manifest %s hashes to sha256:%x: tampered, refused", p.Path, p.Manifest, got)
	}
	m, err := v1.ParseManifest(strings.NewReader(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest %s: %w", p.Path, p.Manifest, err)
	}
	a := m.Annotations
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: manifest %s: %s", p.Path, p.Manifest, fmt.Sprintf(format, args...))
	}
	if m.ArtifactType != archive.PathArtifactType {
		return nil, fail("artifactType %q, want %q", m.ArtifactType, archive.PathArtifactType)
	}
	if a[archive.AnnotationPath] != p.Path {
		return nil, fail("is the manifest of %q", a[archive.AnnotationPath])
	}
	content, err := store.ParseOutputHash(a[archive.AnnotationContentHash])
	if err != nil {
		return nil, fail("%v", err)
	}
	deriver, err := store.ParseDrvHash(a[archive.AnnotationDeriver])
	if err != nil {
		return nil, fail("%v", err)
	}
	diffID, err := v1.NewHash(a[archive.AnnotationDiffID])
	if err != nil || diffID.Algorithm != "sha256" {
		return nil, fail("diff id %q is not sha256:<hex>", a[archive.AnnotationDiffID])
	}
	var refs []store.Path
	if r := a[archive.AnnotationReferences]; r != "" {
		for _, f := range strings.Split(r, " ") {
			rp, err := store.ParsePath(f)
			if err != nil {
				return nil, fail("references: %v", err)
			}
			refs = append(refs, rp)
		}
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != archive.LayerMediaType || m.Layers[0].Digest.Algorithm != "sha256" {
		return nil, fail("want one sha256 layer of type %s", archive.LayerMediaType)
	}
	if err := s.checkLayer(ctx, m.Layers[0], diffID); err != nil {
		return nil, fmt.Errorf("%s: %w", p.Path, err)
	}
	if _, err := strconv.ParseInt(a[archive.AnnotationSize], 10, 64); err != nil {
		return nil, fail("size %q is not a byte count", a[archive.AnnotationSize])
	}
	return &checked{
		entry:   channel.Entry{Path: p.Path, ContentHash: content.String(), Manifest: p.Manifest, ManifestSize: int64(len(raw))},
		subject: archive.SubjectOf(sp, content, diffID, refs, deriver),
	}, nil
}

// checkLayer reads the layer blob: its bytes are its digest and size,
// and its uncompressed bytes hash to diffID.
func (s *Server) checkLayer(ctx context.Context, l v1.Descriptor, diffID v1.Hash) error {
	rc, err := s.cfg.Registry.Blob(ctx, l.Digest.String())
	if err != nil {
		return err
	}
	defer rc.Close()
	compressed := sha256.New()
	lr := &io.LimitedReader{R: rc, N: l.Size + 1}
	tee := io.TeeReader(lr, compressed)
	un := sha256.New()
	zr, zerr := gzip.NewReader(tee)
	if zerr == nil {
		_, zerr = io.Copy(un, zr)
	}
	// The rest of the stream (gzip's trailer, padding, or what follows
	// a broken gzip stream): the digest is of every byte.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	n := l.Size + 1 - lr.N
	if n > l.Size {
		return fmt.Errorf("layer %s is more than the %d bytes the manifest says: tampered, refused", l.Digest, l.Size)
	}
	if n < l.Size {
		return fmt.Errorf("layer %s is %d bytes, the manifest says %d: tampered, refused", l.Digest, n, l.Size)
	}
	if got := hex.EncodeToString(compressed.Sum(nil)); got != l.Digest.Hex {
		return fmt.Errorf("layer %s hashes to sha256:%s: tampered, refused", l.Digest, got)
	}
	if zerr != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, zerr)
	}
	if got := hex.EncodeToString(un.Sum(nil)); got != diffID.Hex {
		return fmt.Errorf("layer %s uncompressed hashes to sha256:%s, the manifest's diff id is %s: tampered, refused", l.Digest, got, diffID)
	}
	return nil
}

// Publish puts a package version into testing, as who: refused unless
// every blob is what its digest says, every trust policy holds for every
// path with the attestations given, and none of its tests failed. The
// package's rows, its attestations and the new testing channel (its
// signed metadata too) are written in one transaction.
func (s *Server) Publish(ctx context.Context, who string, req PublishRequest) error {
	what := "publishing " + req.Attr + " " + req.Version
	if req.Attr == "" || req.Version == "" || len(req.Paths) == 0 {
		return fmt.Errorf("%s: a publish names an attribute, a version and at least one path", what)
	}
	var cs []*checked
	var reasons []string
	seen := map[string]bool{}
	now := s.clock.Now()
	for _, p := range req.Paths {
		if seen[p.Path] {
			return fmt.Errorf("%s: %s given twice", what, p.Path)
		}
		seen[p.Path] = true
		c, err := s.checkPath(ctx, p)
		if err != nil {
			s.audit(nil, who, "publish", req.Attr+" "+req.Version, "refused", err.Error())
			return fmt.Errorf("%s: %w", what, err)
		}
		j := trust.Judge(s.cfg.Trust, trust.Candidate{Subject: c.subject, Attr: req.Attr}, p.Envelopes, now)
		if !j.Admitted() {
			for _, v := range j.Violations() {
				reasons = append(reasons, v.Error())
			}
		}
		c.counted = j.Counted
		c.entry.Attr, c.entry.Version, c.entry.PublishedBy, c.entry.Since = req.Attr, req.Version, who, now.UTC().Truncate(1e9)
		cs = append(cs, c)
	}
	pkg := Package{Attr: req.Attr, Version: req.Version}
	for _, c := range cs {
		pkg.Paths = append(pkg.Paths, c.entry.Path)
	}
	slices.Sort(pkg.Paths)
	runs, err := s.verifyTests(req.Tests)
	if err != nil {
		err := &RefusedError{What: what, Reasons: []string{err.Error()}}
		s.audit(nil, who, "publish", req.Attr+" "+req.Version, "refused", err.Error())
		return err
	}
	hashes := map[string]string{}
	for _, c := range cs {
		hashes[c.entry.Path] = c.entry.ContentHash
	}
	for _, r := range runs {
		if !testsAny(r.run, hashes) {
			reasons = append(reasons, fmt.Sprintf("test result %s tests none of the package's paths", r.digest))
		}
	}
	var results []TestResult
	if at, ok := s.cfg.Tests.(*attestedTests); ok {
		results, err = at.resultsWith(ctx, pkg, runs, hashes)
	} else {
		results, err = s.cfg.Tests.Results(ctx, pkg)
	}
	if err != nil {
		reasons = append(reasons, "tests unknown: "+err.Error())
	}
	results, _ = counted(results)
	for _, r := range results {
		if !r.Passed {
			reasons = append(reasons, "test "+r.Name+" failed")
		}
	}
	if len(reasons) > 0 {
		err := &RefusedError{What: what, Reasons: reasons}
		s.audit(nil, who, "publish", req.Attr+" "+req.Version, "refused", err.Error())
		return err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM packages WHERE attr = ? AND version = ?`, req.Attr, req.Version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return &RefusedError{What: what, Reasons: []string{"that version was published before: publish a new version"}}
		}
		if _, err := tx.Exec(`INSERT INTO packages(attr, version, published_by, published_at) VALUES (?, ?, ?, ?)`, req.Attr, req.Version, who, unix(now)); err != nil {
			return err
		}
		for _, c := range cs {
			var a, v string
			switch err := tx.QueryRow(`SELECT attr, version FROM paths WHERE path = ?`, c.entry.Path).Scan(&a, &v); {
			case err == nil:
				return &RefusedError{What: what, Reasons: []string{c.entry.Path + " was published before, in " + a + " " + v}}
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
			sub, _ := json.Marshal(c.subject)
			if _, err := tx.Exec(`INSERT INTO paths(path, attr, version, manifest, manifest_size, content_hash, subject) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				c.entry.Path, req.Attr, req.Version, c.entry.Manifest, c.entry.ManifestSize, c.entry.ContentHash, string(sub)); err != nil {
				return err
			}
			if err := addEnvelopes(tx, c.entry.Path, c.counted, who, now); err != nil {
				return err
			}
		}
		if err := addTests(tx, runs, who, now); err != nil {
			return err
		}
		if err := s.step("publish:rows"); err != nil {
			return err
		}
		_, testing, err := content(ctx, tx, channel.Testing)
		if err != nil {
			return err
		}
		for _, c := range cs {
			testing = append(testing, c.entry)
		}
		if err := s.move(ctx, tx, map[string][]channel.Entry{channel.Testing: testing}, who, "published "+req.Attr+" "+req.Version); err != nil {
			return err
		}
		if err := s.step("publish:channel"); err != nil {
			return err
		}
		return s.audit(tx, who, "publish", req.Attr+" "+req.Version, "ok", fmt.Sprintf("%d paths into testing", len(cs)))
	})
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			s.audit(nil, who, "publish", req.Attr+" "+req.Version, "refused", err.Error())
		}
		return err
	}
	err = s.afterEvent(ctx)
	return err
}

func addEnvelopes(tx *sql.Tx, path string, envs [][]byte, who string, now interface{ Unix() int64 }) error {
	for _, env := range envs {
		d := trust.EnvelopeDigest(env)
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM envelopes WHERE path = ? AND digest = ?`, path, d).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		if _, err := tx.Exec(`INSERT INTO envelopes(path, digest, envelope, added_by, added_at) VALUES (?, ?, ?, ?, ?)`, path, d, string(env), who, now.Unix()); err != nil {
			return err
		}
	}
	return nil
}

// AddAttestations keeps more attestations of a published path (the
// reproductions that come after a publish), as who: only envelopes one
// of whose valid signatures, by a key of a policy the server knows, is
// of the path's exact bytes. Then the rules are evaluated again.
func (s *Server) AddAttestations(ctx context.Context, who, path string, envs [][]byte) (int, error) {
	var sub string
	if err := s.db.QueryRowContext(ctx, `SELECT subject FROM paths WHERE path = ?`, path).Scan(&sub); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("attestations of %s: the path was never published", path)
		}
		return 0, err
	}
	var subject trust.Subject
	if err := json.Unmarshal([]byte(sub), &subject); err != nil {
		return 0, err
	}
	ps := append(slices.Clone(s.cfg.Trust), s.cfg.Promotion.Stable...)
	j := trust.Judge(ps, trust.Candidate{Subject: subject}, envs, s.clock.Now())
	if len(j.Counted) == 0 {
		return 0, &RefusedError{What: "attestations of " + path, Reasons: append([]string{"none is a valid signature of the path's bytes by a known key"}, j.Notes...)}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := addEnvelopes(tx, path, j.Counted, who, s.clock.Now()); err != nil {
			return err
		}
		return s.audit(tx, who, "attest", path, "ok", fmt.Sprintf("%d envelopes", len(j.Counted)))
	})
	if err != nil {
		return 0, err
	}
	err = s.afterEvent(ctx)
	return len(j.Counted), err
}
