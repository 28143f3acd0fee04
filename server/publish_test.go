package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/trust"
)

func TestPublishRefused(t *testing.T) {
	e := newEnv(t)
	age := e.add("age", "v1")
	other := e.add("other", "x")
	cases := []struct {
		name string
		prep func() PublishRequest
		undo func()
		want string
	}{
		{"failed test", func() PublishRequest {
			e.tests.set("age 1.0", TestResult{Name: "go-test-age", Passed: false})
			return e.request("age", "1.0", age, e.sign(age, trust.Built, "alice"))
		}, func() { e.tests.set("age 1.0") }, "test go-test-age failed"},
		{"no signature", func() PublishRequest {
			return e.request("age", "1.0", age)
		}, nil, "0 of 1 signatures"},
		{"a signature of other bytes", func() PublishRequest {
			return e.request("age", "1.0", age, e.sign(other, trust.Built, "alice"))
		}, nil, "0 of 1 signatures"},
		{"tampered layer", func() PublishRequest {
			d := age.Layer.Digest.String()
			e.reg.blobs[d] = append(bytes.Clone(e.reg.blobs[d][:len(e.reg.blobs[d])-1]), e.reg.blobs[d][len(e.reg.blobs[d])-1]^1)
			return e.request("age", "1.0", age, e.sign(age, trust.Built, "alice"))
		}, nil, "tampered, refused"},
		{"tampered manifest", func() PublishRequest {
			d := age.Manifest.Digest.String()
			e.reg.blobs[d] = bytes.Replace(e.reg.blobs[d], []byte(`"schemaVersion":2`), []byte(`"schemaVersion":2 `), 1)
			return e.request("age", "1.0", age, e.sign(age, trust.Built, "alice"))
		}, nil, "tampered, refused"},
		{"another path's manifest", func() PublishRequest {
			r := e.request("age", "1.0", age, e.sign(age, trust.Built, "alice"))
			r.Paths[0].Manifest = other.Manifest.Digest.String()
			return r
		}, nil, "is the manifest of"},
		{"not in the registry", func() PublishRequest {
			r := e.request("age", "1.0", age)
			r.Paths[0].Manifest = "sha256:" + strings.Repeat("0", 64)
			return r
		}, nil, "not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			saved := map[string][]byte{}
			for k, v := range e.reg.blobs {
				saved[k] = v
			}
			defer func() { e.reg.blobs = saved }()
			if c.undo != nil {
				defer c.undo()
			}
			err := e.srv.Publish(ctx, "pub", c.prep())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if got := e.channel(channel.Testing); len(got) != 0 {
				t.Fatalf("testing %v after a refused publish", got)
			}
		})
	}
	// Each refusal is in the audit log.
	log, err := e.srv.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != len(cases) || log[0].Outcome != "refused" || log[0].Who != "pub" || log[0].Action != "publish" {
		t.Fatalf("audit %+v", log)
	}
}

// A server killed between any two steps of a publish or a promotion
// leaves the channels as they were: the rows and the signed documents
// are written in one transaction.
func TestKillDuringPublishAndPromotion(t *testing.T) {
	for _, step := range []string{"publish:rows", "move:testing", "publish:channel"} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			age := e.add("age", "v1")
			before, _ := e.srv.Metadata(ctx)
			e.srv.fault = func(s string) error {
				if s == step {
					return errors.New("killed at " + s)
				}
				return nil
			}
			if err := e.publish("age", "1.0", age); err == nil || !strings.Contains(err.Error(), "killed at "+step) {
				t.Fatal(err)
			}
			e.srv.Close()
			e.open() // as after a restart
			after, _ := e.srv.Metadata(ctx)
			if !bytes.Equal(before.Timestamp, after.Timestamp) || !bytes.Equal(before.Channels[channel.Testing], after.Channels[channel.Testing]) {
				t.Fatal("the signed metadata changed")
			}
			var n int
			e.srv.db.QueryRow(`SELECT COUNT(*) FROM packages`).Scan(&n)
			if n != 0 || len(e.channel(channel.Testing)) != 0 {
				t.Fatalf("half published: %d packages, testing %v", n, e.channel(channel.Testing))
			}
			if err := e.publish("age", "1.0", age); err != nil {
				t.Fatalf("publishing again: %v", err)
			}
		})
	}
	for _, step := range []string{"promote:decided", "move:stable", "move:testing"} {
		t.Run("promotion "+step, func(t *testing.T) {
			e := newEnv(t)
			v := channel.NewVerifier(e.rootHash, e.clock.Now)
			age := e.add("age", "v1")
			if err := e.publish("age", "1.0", age); err != nil {
				t.Fatal(err)
			}
			e.verify(v)
			e.at(8 * day)
			e.srv.fault = func(s string) error {
				if s == step {
					return errors.New("killed at " + s)
				}
				return nil
			}
			if err := e.srv.Tick(ctx); err == nil {
				t.Fatal("no error")
			}
			if got := e.channel(channel.Testing); !slices.Equal(got, []string{"age 1.0"}) {
				t.Fatalf("testing %v", got)
			}
			if got := e.channel(channel.Stable); len(got) != 0 {
				t.Fatalf("stable %v", got)
			}
			e.verify(v)
			e.srv.fault = nil
			if err := e.srv.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0"}) {
				t.Fatalf("stable %v", got)
			}
			e.verify(v)
		})
	}
}

func TestClientRefusesStaleAndLowerMetadata(t *testing.T) {
	e := newEnv(t)
	v := channel.NewVerifier(e.rootHash, e.clock.Now)
	age := e.add("age", "v1")
	e.publish("age", "1.0", age)
	old, _ := e.srv.Metadata(ctx)
	e.verify(v)
	// A server that stopped re-signing: the timestamp is a day old.
	e.at(day + 1e9)
	if _, err := v.Verify(old); err == nil || !strings.Contains(err.Error(), "timestamp.json is expired") {
		t.Fatalf("stale timestamp: %v", err)
	}
	// The timer re-signs it.
	if err := e.srv.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.verify(v)
	// Served again, the older documents are a rollback.
	e.at(2 * 60 * 60 * 1e9)
	if _, err := v.Verify(old); err == nil || !strings.Contains(err.Error(), "lower than version") {
		t.Fatalf("lower version: %v", err)
	}
}

func TestBackupWhileServing(t *testing.T) {
	e := newEnv(t)
	age := e.add("age", "v1")
	e.publish("age", "1.0", age)
	var buf bytes.Buffer
	if err := e.srv.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, DBFile), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := openDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, es, err := content(ctx, db, channel.Testing)
	if err != nil || len(es) != 1 || es[0].Attr != "age" {
		t.Fatalf("backup's testing: %v %v", es, err)
	}
	if _, err := loadRepo(ctx, db); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefuses(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.Trust = nil
	if _, err := Open(e.dir, cfg, e.clock); err == nil || !strings.Contains(err.Error(), "no trust policy") {
		t.Fatal(err)
	}
	if _, err := Open(t.TempDir(), e.cfg, e.clock); err == nil || !strings.Contains(err.Error(), "holds no server") {
		t.Fatal(err)
	}
	if _, err := Init(e.dir, rootKeys(), 2, e.clock); err == nil || !strings.Contains(err.Error(), "already holds a server") {
		t.Fatal(err)
	}
}

// A year on, the administrators re-sign the root and targets offline;
// a client that pinned the first root verifies the new documents.
func TestResignOffline(t *testing.T) {
	e := newEnv(t)
	v := channel.NewVerifier(e.rootHash, e.clock.Now)
	e.verify(v)
	e.at(340 * day)
	if err := e.srv.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	ts := e.serve()
	h, err := (&Client{Base: ts.URL}).Health(ctx)
	if err != nil || len(h.Expiring) != 2 {
		t.Fatalf("health %+v %v", h, err)
	}
	if err := e.srv.ResignOffline(ctx, "admin", rootKeys()[:1]); err == nil || !strings.Contains(err.Error(), "needs 2 of the current root keys") {
		t.Fatalf("one key: %v", err)
	}
	if err := e.srv.ResignOffline(ctx, "admin", rootKeys()[1:]); err != nil {
		t.Fatal(err)
	}
	e.at(400 * day)
	if err := e.srv.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	vd := e.verify(v)
	if vd.Versions["root"] != 2 {
		t.Fatalf("versions %v", vd.Versions)
	}
	root, _ := os.ReadFile(filepath.Join(e.dir, RootFile))
	m, _ := e.srv.Metadata(ctx)
	if !bytes.Equal(root, m.Root) || len(m.Roots) != 1 || channel.RootHash(m.Roots[0]) != e.rootHash {
		t.Fatal("root.json or the chain is not the new root's")
	}
	for n, want := range map[string][]byte{"1": m.Roots[0], "2": m.Root, "3": nil} {
		resp, err := http.Get(ts.URL + "/tuf/" + n + ".root.json")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want == nil && resp.StatusCode != http.StatusNotFound || want != nil && !bytes.Equal(b, want) {
			t.Fatalf("/tuf/%s.root.json: %s %.80s", n, resp.Status, b)
		}
	}
}

// The schema stays plain SQL that PostgreSQL accepts: no SQLite-only
// types or clauses.
func TestSchemaPortable(t *testing.T) {
	for _, bad := range []string{"AUTOINCREMENT", "WITHOUT ROWID", "INTEGER PRIMARY KEY", "BLOB", "DATETIME", "INSERT OR", "REPLACE INTO", "STRICT"} {
		if strings.Contains(strings.ToUpper(schema+testsSchema), bad) {
			t.Errorf("the schema uses %s", bad)
		}
	}
}

// A publish with k−1 people's signatures, k = 2, is refused; with k it
// is published.
func TestPublishRefusedWithKMinusOneSignatures(t *testing.T) {
	e := newEnv(t)
	e.srv.Close()
	e.cfg.Trust = []*trust.Policy{policy(t, trust.Rule{Signatures: 2})}
	e.open()
	age := e.add("age", "v1")
	err := e.publish("age", "1.0", age, e.sign(age, trust.Built, "alice"))
	if err == nil || !strings.Contains(err.Error(), "1 of 2 signatures: alice built or reproduced it; missing any 1 of bob, carol, dave") {
		t.Fatalf("k−1 signatures: %v", err)
	}
	if got := e.channel(channel.Testing); len(got) != 0 {
		t.Fatalf("testing %v after a refused publish", got)
	}
	if err := e.publish("age", "1.0", age, e.sign(age, trust.Built, "alice"), e.sign(age, trust.Built, "bob")); err != nil {
		t.Fatalf("k signatures: %v", err)
	}
}
