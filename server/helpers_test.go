package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

var day0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// memRegistry is a registry in memory: blobs and manifests by digest.
type memRegistry struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

func (m *memRegistry) get(d string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[d]
	if !ok {
		return nil, fmt.Errorf("registry: %s not found", d)
	}
	return bytes.Clone(b), nil
}
func (m *memRegistry) Manifest(_ context.Context, d string) ([]byte, error) { return m.get(d) }
func (m *memRegistry) Blob(_ context.Context, d string) (io.ReadCloser, error) {
	b, err := m.get(d)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// fakeTests answers the tests of each "attr version".
type fakeTests struct {
	mu      sync.Mutex
	results map[string][]TestResult
}

func (f *fakeTests) Results(_ context.Context, p Package) ([]TestResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.results[p.Attr+" "+p.Version], nil
}
func (f *fakeTests) set(key string, rs ...TestResult) {
	f.mu.Lock()
	f.results[key] = rs
	f.mu.Unlock()
}

// env is a server with a clock at day0, a store with packages, their
// artifacts in a registry, and people's keys.
type env struct {
	t        *testing.T
	dir      string
	clock    *fakeClock
	reg      *memRegistry
	tests    *fakeTests
	store    *store.Store
	srv      *Server
	cfg      Config
	rootHash string
	pkgs     map[string]*archive.Entry // by name
}

var people = []string{"alice", "bob", "carol", "dave"}

func policy(t testing.TB, rules ...trust.Rule) *trust.Policy {
	p := &trust.Policy{Source: "policy.cue"}
	for _, n := range people {
		p.People = append(p.People, trust.Person{Name: n, Keys: []trust.Key{{Public: pathtest.Key(t, n).Public()}}})
	}
	p.Rules = rules
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	return p
}

func rootKeys() []channel.Signer {
	var ks []channel.Signer
	for i := byte(1); i <= 3; i++ {
		ks = append(ks, channel.KeySigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i}, 32))))
	}
	return ks
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvAt(t, filepath.Join(t.TempDir(), "server"))
}

// newEnvAt is newEnv with the server's data directory at dir.
func newEnvAt(t *testing.T, dir string) *env {
	t.Helper()
	e := &env{t: t, dir: dir, clock: &fakeClock{t: day0},
		reg: &memRegistry{blobs: map[string][]byte{}}, tests: &fakeTests{results: map[string][]TestResult{}},
		store: pathtest.NewStore(t), pkgs: map[string]*archive.Entry{}}
	var err error
	if e.rootHash, err = Init(e.dir, rootKeys(), 2, e.clock); err != nil {
		t.Fatal(err)
	}
	e.cfg = Config{
		Trust:     []*trust.Policy{policy(t, trust.Rule{Signatures: 1})},
		Promotion: Promotion{Stable: []*trust.Policy{policy(t, trust.Rule{Signatures: 2, Reproductions: 1})}},
		Registry:  e.reg,
		Tests:     e.tests,
	}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	s, err := Open(e.dir, e.cfg, e.clock)
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = s
	e.t.Cleanup(func() { s.Close() })
}

// add installs a path named name with content, exports it and puts its
// blobs in the registry.
func (e *env) add(name, content string) *archive.Entry {
	e.t.Helper()
	p := pathtest.Install(e.t, e.store, name, map[string]string{"bin/" + name + "*": content, "share/" + content: content})
	dir := filepath.Join(e.t.TempDir(), "oci")
	res, err := archive.Export(context.Background(), e.store, []store.Path{p}, dir, archive.ExportOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	blobs, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
	for _, b := range blobs {
		data, err := os.ReadFile(b)
		if err != nil {
			e.t.Fatal(err)
		}
		e.reg.blobs["sha256:"+filepath.Base(b)] = data
	}
	ent := res.Entries[0]
	e.pkgs[name] = ent
	return ent
}

func (e *env) sign(ent *archive.Entry, kind trust.Kind, who string) []byte {
	e.t.Helper()
	env, err := trust.Sign(&trust.Claim{Kind: kind, Subject: ent.Subject(), Builder: "test", Time: e.clock.Now()}, pathtest.Key(e.t, who))
	if err != nil {
		e.t.Fatal(err)
	}
	return env
}

func (e *env) request(attr, version string, ent *archive.Entry, envs ...[]byte) PublishRequest {
	return PublishRequest{Attr: attr, Version: version, Paths: []PublishedPath{{Path: ent.Path.String(), Manifest: ent.Manifest.Digest.String(), Envelopes: envs}}}
}

// publish publishes ent as attr version, built by alice and bob and
// reproduced by carol (the quorum holds) unless envs are given.
func (e *env) publish(attr, version string, ent *archive.Entry, envs ...[]byte) error {
	e.t.Helper()
	if envs == nil {
		envs = [][]byte{e.sign(ent, trust.Built, "alice"), e.sign(ent, trust.Built, "bob"), e.sign(ent, trust.Reproduced, "carol")}
	}
	return e.srv.Publish(context.Background(), "pub", e.request(attr, version, ent, envs...))
}

func (e *env) at(d time.Duration) { e.clock.Set(day0.Add(d)) }

// channel returns the entries of ch as "attr version" strings.
func (e *env) channel(ch string) []string {
	e.t.Helper()
	_, es, err := content(context.Background(), e.srv.db, ch)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, x := range es {
		out = append(out, x.Attr+" "+x.Version)
	}
	return out
}

// evaluate runs the rules and returns the decision of attr version.
func (e *env) evaluate(attr, version string) *Decision {
	e.t.Helper()
	ds, err := e.srv.Evaluate(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, d := range ds {
		if d.Attr == attr && d.Version == version {
			return d
		}
	}
	e.t.Fatalf("no decision of %s %s in %v", attr, version, ds)
	return nil
}

// verify checks the served metadata as a client at the clock's time and
// returns what each channel holds.
func (e *env) verify(v *channel.Verifier) *channel.Verified {
	e.t.Helper()
	m, err := e.srv.Metadata(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	vd, err := v.Verify(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return vd
}

func wantExcuses(t *testing.T, d *Decision, want ...string) {
	t.Helper()
	if d.Promoted {
		t.Fatalf("promoted, want excuses %q", want)
	}
	got := strings.Join(d.Excuses, "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Fatalf("excuses:\n%s\nwant one with %q", got, w)
		}
	}
}
