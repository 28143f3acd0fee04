package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

func testSecretKey(t *testing.T, name string) *trust.SecretKey {
	t.Helper()
	seed := sha256.Sum256([]byte("attest test " + name))
	k, err := trust.KeyFromSeed(name, seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// builtPath installs a path as a build would (a deriver, no pin).
func builtPath(t *testing.T, st *store.Store, name, content string) store.Path {
	t.Helper()
	d := &store.Derivation{Name: name, Builder: "builtin:test", Args: []string{content}, System: "x86_64-linux"}
	p, err := d.Path()
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := st.TempDir("add-test-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	os.Mkdir(out, 0o755)
	if err := os.WriteFile(filepath.Join(out, "data"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Install(context.Background(), store.InstallRequest{Path: p, Source: out, Deriver: p.Hash}); err != nil {
		t.Fatal(err)
	}
	return p
}

func openTestStore(t *testing.T) *store.Store {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestTrustAdmission: a path from another store is admitted only when
// the owner's quorum signed it there; a configuration's looser policy
// does not help; what counted is kept.
func TestTrustAdmission(t *testing.T) {
	ctx := context.Background()
	src, dst := openTestStore(t), openTestStore(t)
	p := builtPath(t, src, "hello", "hello")
	alice, bob := testSecretKey(t, "alice"), testSecretKey(t, "bob")
	people := []trust.Person{{Name: "alice", Keys: []trust.Key{{Public: alice.Public()}}}, {Name: "bob", Keys: []trust.Key{{Public: bob.Public()}}}}
	owner := &trust.Policy{Source: "owner", People: people, Rules: []trust.Rule{{Signatures: 2}}}
	loose := &trust.Policy{Source: "configuration", People: people, Rules: []trust.Rule{{Signatures: 1}}}
	adm := &trustAdmission{owner: []*trust.Policy{owner}, others: []*trust.Policy{loose}, now: time.Now(), keep: trust.StoreDir(dst.Dir)}

	// Alice built it, as the source's attester says.
	if err := (&keyAttester{st: src, key: alice, now: time.Now}).Built(ctx, mustInfo(t, src, p)); err != nil {
		t.Fatal(err)
	}
	_, err := realize.Substitute(ctx, dst, src, adm, p)
	var na *realize.NotAdmittedError
	if !errors.As(err, &na) || !strings.Contains(err.Error(), "1 of 2 signatures: alice built or reproduced it; missing any 1 of bob") {
		t.Fatalf("got %v, want refused for one signature of two", err)
	}
	if _, ok, _ := dst.QueryPathInfo(ctx, p); ok {
		t.Fatal("a refused path is valid")
	}
	if envs, _ := trust.StoreDir(dst.Dir).List(p.Base()); len(envs) != 0 {
		t.Fatalf("kept %d attestations of a refused path", len(envs))
	}

	// A signature by a key nobody trusts, then bob's reproduction.
	mallory := testSecretKey(t, "mallory")
	if _, err := attestPath(ctx, src, mallory, trust.Built, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := realize.Substitute(ctx, dst, src, adm, p); !errors.As(err, &na) || !strings.Contains(err.Error(), "a key the policy does not know") {
		t.Fatalf("got %v, want refused naming mallory's key as unknown", err)
	}
	if err := (&keyAttester{st: src, key: bob, now: time.Now}).Reproduced(ctx, mustInfo(t, src, p)); err != nil {
		t.Fatal(err)
	}
	got, err := realize.Substitute(ctx, dst, src, adm, p)
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v; want %s admitted", got, err, p)
	}
	envs, err := trust.StoreDir(dst.Dir).List(p.Base())
	if err != nil || len(envs) != 2 {
		t.Fatalf("kept %d attestations (%v), want alice's and bob's", len(envs), err)
	}

	// No policy at all: nothing unpinned is admitted.
	q := builtPath(t, src, "other", "other")
	if _, err := realize.Substitute(ctx, dst, src, &trustAdmission{now: time.Now()}, q); !errors.As(err, &na) || !strings.Contains(err.Error(), "no trust policy") {
		t.Fatalf("got %v, want refused for want of a policy", err)
	}
}

func mustInfo(t *testing.T, st *store.Store, p store.Path) *store.PathInfo {
	t.Helper()
	info, ok, err := st.QueryPathInfo(context.Background(), p)
	if err != nil || !ok {
		t.Fatalf("%s: %v, %v", p, ok, err)
	}
	return info
}
