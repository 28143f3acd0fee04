package channel

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

func key(seed byte) KeySigner {
	return KeySigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
}

func entry(name string) Entry {
	h := sha256.Sum256([]byte(name))
	return Entry{Attr: "base.packages." + name, Version: "1.0", Path: "/heph/store/" + strings.Repeat("a", 52) + "-" + name,
		ContentHash: "blake3:00", Manifest: "sha256:" + hex.EncodeToString(h[:]), ManifestSize: 400, PublishedBy: "pub", Since: t0}
}

func initRepo(t *testing.T) (*Repo, Signer) {
	t.Helper()
	online := key(9)
	r, err := Init([]Signer{key(1), key(2), key(3)}, 2, online, t0, DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	return r, online
}

func clockAt(tm *time.Time) func() time.Time { return func() time.Time { return *tm } }

func TestVerifyAcceptsAndAdmits(t *testing.T) {
	r, online := initRepo(t)
	r2, err := r.Update(online, map[string][]Entry{Testing: {entry("age")}}, t0.Add(time.Hour), DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Hour)
	v := NewVerifier(RootHash(r2.Root), clockAt(&now))
	got, err := v.Verify(r2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Versions[Testing] != 2 || got.Versions["snapshot"] != 2 || got.Versions["timestamp"] != 2 || got.Versions[Stable] != 1 {
		t.Fatalf("versions %v", got.Versions)
	}
	e := entry("age")
	if _, err := got.Admit(Testing, e.Path, e.Manifest); err != nil {
		t.Fatal(err)
	}
	if _, err := got.Admit(Stable, e.Path, e.Manifest); err == nil || !strings.Contains(err.Error(), "is not in channel stable") {
		t.Fatalf("admitted from stable: %v", err)
	}
	if _, err := got.Admit(Testing, e.Path, entry("other").Manifest); err == nil || !strings.Contains(err.Error(), "holds manifest") {
		t.Fatalf("admitted other bytes: %v", err)
	}
	if m := got.Manifests(Testing); len(m) != 1 || m[e.Path] != e.Manifest || len(got.Manifests(Stable)) != 0 {
		t.Fatalf("manifests %v", m)
	}
	if g := got.Channels[Testing][0]; g != e {
		t.Fatalf("entry %+v, want %+v", g, e)
	}
}

func TestVerifyRefusesStaleTimestamp(t *testing.T) {
	r, _ := initRepo(t)
	now := t0.Add(25 * time.Hour) // the timestamp is valid one day
	v := NewVerifier(RootHash(r.Root), clockAt(&now))
	if _, err := v.Verify(r); err == nil || !strings.Contains(err.Error(), "timestamp.json is expired") {
		t.Fatalf("stale timestamp: %v", err)
	}
}

func TestRefreshKeepsItFresh(t *testing.T) {
	r, online := initRepo(t)
	now := t0.Add(13 * time.Hour) // past half the timestamp's day
	r2, changed, err := r.Refresh(online, now, DefaultExpiry)
	if err != nil || !changed {
		t.Fatalf("refresh: %v %v", changed, err)
	}
	now = t0.Add(30 * time.Hour)
	v := NewVerifier(RootHash(r.Root), clockAt(&now))
	if _, err := v.Verify(r2); err != nil {
		t.Fatalf("refreshed timestamp refused: %v", err)
	}
	if r3, changed, err := r2.Refresh(online, t0.Add(14*time.Hour), DefaultExpiry); err != nil || changed || r3 != r2 {
		t.Fatalf("a fresh repo was re-signed: %v %v", changed, err)
	}
	// 20 days on, the channels and the snapshot are re-signed too.
	now = t0.Add(20 * 24 * time.Hour)
	r4, changed, err := r2.Refresh(online, now, DefaultExpiry)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	if _, err := v.Verify(r4); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusesLowerVersion(t *testing.T) {
	r, online := initRepo(t)
	r2, err := r.Update(online, map[string][]Entry{Stable: {entry("age")}}, t0, DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	v := NewVerifier(RootHash(r.Root), clockAt(&now))
	if _, err := v.Verify(r2); err != nil {
		t.Fatal(err)
	}
	// A server (or a man in the middle) serving the older, validly
	// signed documents again.
	if _, err := v.Verify(r); err == nil || !strings.Contains(err.Error(), "lower than version 2 accepted before") {
		t.Fatalf("rollback accepted: %v", err)
	}
	// Kept between runs.
	seen := filepath.Join(t.TempDir(), "seen.json")
	if err := v.SaveSeen(seen); err != nil {
		t.Fatal(err)
	}
	v2 := NewVerifier(RootHash(r.Root), clockAt(&now))
	if err := v2.LoadSeen(seen); err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Verify(r); err == nil {
		t.Fatal("rollback accepted after LoadSeen")
	}
	if err := NewVerifier("", clockAt(&now)).LoadSeen(seen + ".missing"); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusesBadSignature(t *testing.T) {
	r, online := initRepo(t)
	now := t0.Add(time.Hour)
	cases := map[string]func() *Repo{
		"channel signed by another key": func() *Repo {
			r2, err := r.Update(key(7), map[string][]Entry{Stable: {entry("evil")}}, t0, DefaultExpiry)
			if err != nil {
				t.Fatal(err)
			}
			// The snapshot and timestamp are the honest key's.
			good, _ := r.Update(online, map[string][]Entry{Stable: {entry("evil")}}, t0, DefaultExpiry)
			good.Channels[Stable] = r2.Channels[Stable]
			return good
		},
		"channel content changed after signing": func() *Repo {
			r2, _ := r.Update(online, map[string][]Entry{Stable: {entry("age")}}, t0, DefaultExpiry)
			r2.Channels[Stable] = bytes.Replace(r2.Channels[Stable], []byte(`"1.0"`), []byte(`"6.6"`), 1)
			return r2
		},
		"timestamp signed by another key": func() *Repo {
			r2, _ := r.Update(key(7), map[string][]Entry{}, t0, DefaultExpiry)
			return r2
		},
		"another root": func() *Repo {
			o, _ := Init([]Signer{key(4)}, 1, key(5), t0, DefaultExpiry)
			return o
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			v := NewVerifier(RootHash(r.Root), clockAt(&now))
			if _, err := v.Verify(mk()); err == nil {
				t.Fatal("accepted")
			} else {
				t.Log(err)
			}
		})
	}
}

func TestInitRefusesBadThreshold(t *testing.T) {
	if _, err := Init([]Signer{key(1)}, 2, key(9), t0, DefaultExpiry); err == nil || !strings.Contains(err.Error(), "threshold of 2 with 1 root keys") {
		t.Fatal(err)
	}
	if _, err := Init([]Signer{key(1)}, 1, key(1), t0, DefaultExpiry); err == nil || !strings.Contains(err.Error(), "also a root key") {
		t.Fatal(err)
	}
}

func TestUpdateDeterministic(t *testing.T) {
	r, online := initRepo(t)
	a, _ := r.Update(online, map[string][]Entry{Testing: {entry("b"), entry("a")}}, t0, DefaultExpiry)
	b, _ := r.Update(online, map[string][]Entry{Testing: {entry("a"), entry("b")}}, t0, DefaultExpiry)
	if !bytes.Equal(a.Channels[Testing], b.Channels[Testing]) || !bytes.Equal(a.Timestamp, b.Timestamp) {
		t.Fatal("same content, different documents")
	}
}

// Before the year of the root and targets runs out, k of the offline keys
// sign new versions; a client that pinned the first root follows the
// chain.
func TestResignOffline(t *testing.T) {
	r, online := initRepo(t)
	pinned := RootHash(r.Root)
	if got := r.Expiring(t0.Add(340*24*time.Hour), 30*24*time.Hour); len(got) != 2 {
		t.Fatalf("expiring %v", got)
	}
	if _, err := r.Resign([]Signer{key(1)}, online, t0, DefaultExpiry); err == nil || !strings.Contains(err.Error(), "needs 2 of the current root keys") {
		t.Fatalf("one root key: %v", err)
	}
	if _, err := r.Resign([]Signer{key(1), key(7)}, online, t0, DefaultExpiry); err == nil {
		t.Fatal("a key that is not a root key counted")
	}
	at := t0.Add(300 * 24 * time.Hour)
	r2, err := r.Resign([]Signer{key(1), key(3)}, online, at, DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(400 * 24 * time.Hour) // the first root has expired
	r3, _, err := r2.Refresh(online, now, DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(pinned, clockAt(&now))
	got, err := v.Verify(r3)
	if err != nil {
		t.Fatal(err)
	}
	if got.Versions["root"] != 2 || got.Versions["targets"] != 2 {
		t.Fatalf("versions %v", got.Versions)
	}
	if len(r3.Expiring(now, 30*24*time.Hour)) != 0 {
		t.Fatal("still expiring")
	}
	// The chain without its first link does not reach the pin.
	r4 := r3.Clone()
	r4.Roots = nil
	if _, err := NewVerifier(pinned, clockAt(&now)).Verify(r4); err == nil || !strings.Contains(err.Error(), "not the pinned") {
		t.Fatalf("broken chain: %v", err)
	}
	// A forged next root, signed by a non-root key, is refused.
	forged, err := r.Resign([]Signer{key(1), key(2)}, online, at, DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := Init([]Signer{key(5), key(6)}, 1, online, at, DefaultExpiry)
	forged.Root = bytes.Replace(f.Root, []byte(`"version":1`), []byte(`"version":2`), 1)
	if _, err := NewVerifier(pinned, clockAt(&at)).Verify(forged); err == nil {
		t.Fatal("forged root accepted")
	} else {
		t.Log(err)
	}
}
