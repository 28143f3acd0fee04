// Package channel owns the package server's channels as TUF metadata
// (github.com/theupdateframework/go-tuf/v2): the signed documents a server
// publishes (Repo, Init, Update, Refresh) and the checks a client makes
// before it admits anything from a channel (Verifier). A root held k-of-n
// by offline keys names the keys of the top-level targets (the same
// offline keys) and of snapshot and timestamp (the server's online key);
// the top-level targets delegate one role per channel (testing, stable,
// deprecated) to the online key, each allowed only the target paths
// "<channel>/…". Every change is a new, higher version of the documents
// it touches; a client never accepts a lower one. It imports nothing of
// hephc.
package channel

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// The channels, and Names, sorted.
const (
	Testing    = "testing"
	Stable     = "stable"
	Deprecated = "deprecated"
)

// Names are the channels, sorted.
var Names = []string{Deprecated, Stable, Testing}

// Valid reports whether name is a channel.
func Valid(name string) bool { return slices.Contains(Names, name) }

// Entry is one store path of a package version in a channel: a TUF
// target named "<channel>/<hash>-<name>" whose length and sha256 are its
// OCI manifest's, the rest in the target's custom field.
type Entry struct {
	Attr         string    `json:"attr"`
	Version      string    `json:"version"`
	Path         string    `json:"path"`        // /heph/store/<hash>-<name>
	ContentHash  string    `json:"contentHash"` // blake3:<hex>
	Manifest     string    `json:"manifest"`    // sha256:<hex> of the path's OCI manifest
	ManifestSize int64     `json:"manifestSize"`
	PublishedBy  string    `json:"publishedBy"`
	Since        time.Time `json:"since"` // when it entered this channel
}

// custom is what a target's custom field holds.
type custom struct {
	Attr        string    `json:"attr"`
	Version     string    `json:"version"`
	Path        string    `json:"path"`
	ContentHash string    `json:"contentHash"`
	PublishedBy string    `json:"publishedBy"`
	Since       time.Time `json:"since"`
}

// Expiry says how long each document is valid after it is signed.
type Expiry struct {
	Root, Targets, Channel, Snapshot, Timestamp time.Duration
}

// DefaultExpiry: a year for the offline documents, 30 days for a
// channel, 7 for the snapshot, one for the timestamp.
var DefaultExpiry = Expiry{
	Root:      365 * 24 * time.Hour,
	Targets:   365 * 24 * time.Hour,
	Channel:   30 * 24 * time.Hour,
	Snapshot:  7 * 24 * time.Hour,
	Timestamp: 24 * time.Hour,
}

// Signer is an ed25519 key that signs: the offline root keys and the
// server's online key.
type Signer interface {
	PublicKey() ed25519.PublicKey
	Sign(msg []byte) []byte
}

// KeySigner is a Signer over an ed25519 private key.
type KeySigner ed25519.PrivateKey

func (k KeySigner) PublicKey() ed25519.PublicKey {
	return ed25519.PrivateKey(k).Public().(ed25519.PublicKey)
}
func (k KeySigner) Sign(msg []byte) []byte { return ed25519.Sign(ed25519.PrivateKey(k), msg) }

// tufSigner adapts a Signer to what go-tuf signs with.
type tufSigner struct{ s Signer }

func (t tufSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return t.s.PublicKey(), nil
}
func (t tufSigner) SignMessage(r io.Reader, _ ...signature.SignOption) ([]byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return t.s.Sign(b), nil
}

// Repo is the current signed metadata of a server: each document as the
// bytes served (go-tuf's JSON, not indented).
type Repo struct {
	// Root is the current root; Roots the versions before it, oldest
	// first, for clients that pinned an older one (each version is
	// signed by its predecessor's threshold and its own).
	Root      []byte            `json:"root"`
	Roots     [][]byte          `json:"roots,omitempty"`
	Targets   []byte            `json:"targets"`
	Snapshot  []byte            `json:"snapshot"`
	Timestamp []byte            `json:"timestamp"`
	Channels  map[string][]byte `json:"channels"`
}

// RootHash is what a client pins: "sha256:" and the hex sha256 of the
// root document's bytes.
func RootHash(root []byte) string {
	h := sha256.Sum256(root)
	return "sha256:" + hex.EncodeToString(h[:])
}

func keyOf(s Signer) (*metadata.Key, string, error) {
	k, err := metadata.KeyFromPublicKey(s.PublicKey())
	if err != nil {
		return nil, "", err
	}
	id, err := k.ID()
	return k, id, err
}

func sign[T metadata.Roles](m *metadata.Metadata[T], signers ...Signer) ([]byte, error) {
	m.ClearSignatures()
	for _, s := range signers {
		if _, err := m.Sign(tufSigner{s}); err != nil {
			return nil, err
		}
	}
	return m.ToBytes(false)
}

// Init makes version 1 of every document: a root whose root and targets
// roles are the rootKeys, threshold of them, and whose snapshot and
// timestamp roles are the online key; a top-level targets that delegates
// each channel to the online key; empty channels. Every root key signs
// the root and the targets.
func Init(rootKeys []Signer, threshold int, online Signer, now time.Time, exp Expiry) (*Repo, error) {
	if threshold < 1 || threshold > len(rootKeys) {
		return nil, fmt.Errorf("channel metadata: a root threshold of %d with %d root keys: want 1 to %d", threshold, len(rootKeys), len(rootKeys))
	}
	now = now.UTC().Truncate(time.Second)
	root := metadata.Root(now.Add(exp.Root))
	seen := map[string]bool{}
	for _, s := range rootKeys {
		k, id, err := keyOf(s)
		if err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, fmt.Errorf("channel metadata: root key %s given twice", id)
		}
		seen[id] = true
		for _, role := range []string{metadata.ROOT, metadata.TARGETS} {
			if err := root.Signed.AddKey(k, role); err != nil {
				return nil, err
			}
		}
	}
	ok, oid, err := keyOf(online)
	if err != nil {
		return nil, err
	}
	if seen[oid] {
		return nil, fmt.Errorf("channel metadata: the online key %s is also a root key", oid)
	}
	for _, role := range []string{metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(ok, role); err != nil {
			return nil, err
		}
	}
	root.Signed.Roles[metadata.ROOT].Threshold = threshold
	root.Signed.Roles[metadata.TARGETS].Threshold = threshold
	r := &Repo{Channels: map[string][]byte{}}
	if r.Root, err = sign(root, rootKeys...); err != nil {
		return nil, fmt.Errorf("channel metadata: signing root: %w", err)
	}

	targets := metadata.Targets(now.Add(exp.Targets))
	targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{oid: ok}}
	for _, ch := range Names {
		targets.Signed.Delegations.Roles = append(targets.Signed.Delegations.Roles, metadata.DelegatedRole{
			Name: ch, KeyIDs: []string{oid}, Threshold: 1, Terminating: true, Paths: []string{ch + "/*"},
		})
	}
	if r.Targets, err = sign(targets, rootKeys...); err != nil {
		return nil, fmt.Errorf("channel metadata: signing targets: %w", err)
	}
	snap := metadata.Snapshot(now.Add(exp.Snapshot))
	snap.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(1)}
	for _, ch := range Names {
		t := metadata.Targets(now.Add(exp.Channel))
		if r.Channels[ch], err = sign(t, online); err != nil {
			return nil, fmt.Errorf("channel metadata: signing %s: %w", ch, err)
		}
		snap.Signed.Meta[ch+".json"] = metadata.MetaFile(1)
	}
	if r.Snapshot, err = sign(snap, online); err != nil {
		return nil, fmt.Errorf("channel metadata: signing snapshot: %w", err)
	}
	ts := metadata.Timestamp(now.Add(exp.Timestamp))
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metadata.MetaFile(1)}
	if r.Timestamp, err = sign(ts, online); err != nil {
		return nil, fmt.Errorf("channel metadata: signing timestamp: %w", err)
	}
	return r, nil
}

// Clone returns a copy of r that shares no map with it.
func (r *Repo) Clone() *Repo {
	c := *r
	c.Roots = slices.Clone(r.Roots)
	c.Channels = map[string][]byte{}
	for k, v := range r.Channels {
		c.Channels[k] = v
	}
	return &c
}

// Update returns the documents with each channel of changes holding
// exactly its entries: a new, higher version of each changed channel, of
// the snapshot and of the timestamp, signed by online. r is unchanged.
func (r *Repo) Update(online Signer, changes map[string][]Entry, now time.Time, exp Expiry) (*Repo, error) {
	now = now.UTC().Truncate(time.Second)
	out := r.Clone()
	snap, err := metadata.Snapshot().FromBytes(r.Snapshot)
	if err != nil {
		return nil, fmt.Errorf("channel metadata: snapshot: %w", err)
	}
	for _, ch := range sortedKeys(changes) {
		if !Valid(ch) {
			return nil, fmt.Errorf("channel metadata: %q is not a channel (%s)", ch, strings.Join(Names, ", "))
		}
		t, err := metadata.Targets().FromBytes(r.Channels[ch])
		if err != nil {
			return nil, fmt.Errorf("channel metadata: %s: %w", ch, err)
		}
		t.Signed.Version++
		t.Signed.Expires = now.Add(exp.Channel)
		t.Signed.Targets = map[string]*metadata.TargetFiles{}
		for _, e := range changes[ch] {
			name, tf, err := targetOf(ch, e)
			if err != nil {
				return nil, err
			}
			if _, dup := t.Signed.Targets[name]; dup {
				return nil, fmt.Errorf("channel metadata: %s holds %s twice", ch, e.Path)
			}
			t.Signed.Targets[name] = tf
		}
		if out.Channels[ch], err = sign(t, online); err != nil {
			return nil, fmt.Errorf("channel metadata: signing %s: %w", ch, err)
		}
		snap.Signed.Meta[ch+".json"] = metadata.MetaFile(t.Signed.Version)
	}
	return out.bump(online, snap, now, exp)
}

// bump signs snap as a new version and a new timestamp that names it.
func (r *Repo) bump(online Signer, snap *metadata.Metadata[metadata.SnapshotType], now time.Time, exp Expiry) (*Repo, error) {
	snap.Signed.Version++
	snap.Signed.Expires = now.Add(exp.Snapshot)
	var err error
	if r.Snapshot, err = sign(snap, online); err != nil {
		return nil, fmt.Errorf("channel metadata: signing snapshot: %w", err)
	}
	ts, err := metadata.Timestamp().FromBytes(r.Timestamp)
	if err != nil {
		return nil, fmt.Errorf("channel metadata: timestamp: %w", err)
	}
	ts.Signed.Version++
	ts.Signed.Expires = now.Add(exp.Timestamp)
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metadata.MetaFile(snap.Signed.Version)}
	if r.Timestamp, err = sign(ts, online); err != nil {
		return nil, fmt.Errorf("channel metadata: signing timestamp: %w", err)
	}
	return r, nil
}

// Refresh re-signs, as new versions with the same content, the online
// documents with less than half their validity left at now: a channel,
// then the snapshot (also when a channel changed), then the timestamp
// (also when the snapshot changed). It returns r itself when nothing
// needed it. The root and top-level targets need the offline keys:
// Expiring says when they run out.
func (r *Repo) Refresh(online Signer, now time.Time, exp Expiry) (*Repo, bool, error) {
	now = now.UTC().Truncate(time.Second)
	stale := func(expires time.Time, valid time.Duration) bool { return expires.Sub(now) < valid/2 }
	snap, err := metadata.Snapshot().FromBytes(r.Snapshot)
	if err != nil {
		return nil, false, fmt.Errorf("channel metadata: snapshot: %w", err)
	}
	out := r.Clone()
	changed := false
	for _, ch := range Names {
		t, err := metadata.Targets().FromBytes(r.Channels[ch])
		if err != nil {
			return nil, false, fmt.Errorf("channel metadata: %s: %w", ch, err)
		}
		if !stale(t.Signed.Expires, exp.Channel) {
			continue
		}
		t.Signed.Version++
		t.Signed.Expires = now.Add(exp.Channel)
		if out.Channels[ch], err = sign(t, online); err != nil {
			return nil, false, err
		}
		snap.Signed.Meta[ch+".json"] = metadata.MetaFile(t.Signed.Version)
		changed = true
	}
	if changed || stale(snap.Signed.Expires, exp.Snapshot) {
		out, err = out.bump(online, snap, now, exp)
		return out, err == nil, err
	}
	ts, err := metadata.Timestamp().FromBytes(r.Timestamp)
	if err != nil {
		return nil, false, fmt.Errorf("channel metadata: timestamp: %w", err)
	}
	if !stale(ts.Signed.Expires, exp.Timestamp) {
		return r, false, nil
	}
	ts.Signed.Version++
	ts.Signed.Expires = now.Add(exp.Timestamp)
	if out.Timestamp, err = sign(ts, online); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// Resign is the offline keys' work: a new version of the root (the same
// keys and thresholds) and of the top-level targets (the same
// delegations), both valid for their full term again from now, signed
// by rootKeys — at least the threshold of the current root's keys — and
// a new snapshot and timestamp by online. Clients that pinned an older
// root follow the chain (Roots). r is unchanged.
func (r *Repo) Resign(rootKeys []Signer, online Signer, now time.Time, exp Expiry) (*Repo, error) {
	now = now.UTC().Truncate(time.Second)
	old, err := metadata.Root().FromBytes(r.Root)
	if err != nil {
		return nil, fmt.Errorf("channel metadata: root: %w", err)
	}
	root, err := metadata.Root().FromBytes(r.Root)
	if err != nil {
		return nil, err
	}
	root.Signed.Version++
	root.Signed.Expires = now.Add(exp.Root)
	out := r.Clone()
	if out.Root, err = sign(root, rootKeys...); err != nil {
		return nil, fmt.Errorf("channel metadata: signing root: %w", err)
	}
	signed, _ := metadata.Root().FromBytes(out.Root)
	if err := old.VerifyDelegate(metadata.ROOT, signed); err != nil {
		return nil, fmt.Errorf("channel metadata: the new root needs %d of the current root keys: %w", old.Signed.Roles[metadata.ROOT].Threshold, err)
	}
	out.Roots = append(out.Roots, r.Root)
	targets, err := metadata.Targets().FromBytes(r.Targets)
	if err != nil {
		return nil, fmt.Errorf("channel metadata: targets: %w", err)
	}
	targets.Signed.Version++
	targets.Signed.Expires = now.Add(exp.Targets)
	if out.Targets, err = sign(targets, rootKeys...); err != nil {
		return nil, fmt.Errorf("channel metadata: signing targets: %w", err)
	}
	st, _ := metadata.Targets().FromBytes(out.Targets)
	if err := signed.VerifyDelegate(metadata.TARGETS, st); err != nil {
		return nil, fmt.Errorf("channel metadata: the new targets need %d of the root keys: %w", signed.Signed.Roles[metadata.TARGETS].Threshold, err)
	}
	snap, err := metadata.Snapshot().FromBytes(r.Snapshot)
	if err != nil {
		return nil, fmt.Errorf("channel metadata: snapshot: %w", err)
	}
	snap.Signed.Meta["targets.json"] = metadata.MetaFile(targets.Signed.Version)
	return out.bump(online, snap, now, exp)
}

// Expiring returns the offline documents (root, targets) that expire
// before now+within, with when: only the offline keys can re-sign them.
func (r *Repo) Expiring(now time.Time, within time.Duration) []string {
	var out []string
	if root, err := metadata.Root().FromBytes(r.Root); err == nil && root.Signed.Expires.Before(now.Add(within)) {
		out = append(out, "root expires "+root.Signed.Expires.UTC().Format(time.RFC3339))
	}
	if t, err := metadata.Targets().FromBytes(r.Targets); err == nil && t.Signed.Expires.Before(now.Add(within)) {
		out = append(out, "targets expires "+t.Signed.Expires.UTC().Format(time.RFC3339))
	}
	return out
}

// Versions returns the version of each document: root, targets,
// snapshot, timestamp and each channel by name.
func (r *Repo) Versions() (map[string]int64, error) {
	v := map[string]int64{}
	var err error
	get := func(name string, b []byte) {
		if err != nil {
			return
		}
		var d struct {
			Signed struct {
				Version int64 `json:"version"`
			} `json:"signed"`
		}
		if e := json.Unmarshal(b, &d); e != nil {
			err = fmt.Errorf("channel metadata: %s: %w", name, e)
		}
		v[name] = d.Signed.Version
	}
	get(metadata.ROOT, r.Root)
	get(metadata.TARGETS, r.Targets)
	get(metadata.SNAPSHOT, r.Snapshot)
	get(metadata.TIMESTAMP, r.Timestamp)
	for _, ch := range Names {
		get(ch, r.Channels[ch])
	}
	return v, err
}

func targetOf(ch string, e Entry) (string, *metadata.TargetFiles, error) {
	base := path.Base(e.Path)
	if !strings.HasPrefix(e.Path, "/heph/store/") || strings.ContainsAny(base, "/*?[\\") || base != e.Path[len("/heph/store/"):] {
		return "", nil, fmt.Errorf("channel metadata: %q is not a store path", e.Path)
	}
	hexd, ok := strings.CutPrefix(e.Manifest, "sha256:")
	if b, err := hex.DecodeString(hexd); !ok || err != nil || len(b) != sha256.Size {
		return "", nil, fmt.Errorf("channel metadata: %s: manifest digest %q is not sha256:<hex>", e.Path, e.Manifest)
	}
	c, err := json.Marshal(custom{Attr: e.Attr, Version: e.Version, Path: e.Path, ContentHash: e.ContentHash, PublishedBy: e.PublishedBy, Since: e.Since.UTC()})
	if err != nil {
		return "", nil, err
	}
	raw := json.RawMessage(c)
	name := ch + "/" + base
	return name, &metadata.TargetFiles{Length: e.ManifestSize, Hashes: metadata.Hashes{"sha256": mustHex(hexd)}, Custom: &raw, Path: name}, nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// entriesOf reads a verified channel document's entries, sorted by
// attr, version and path.
func entriesOf(ch string, t *metadata.Metadata[metadata.TargetsType]) ([]Entry, error) {
	var out []Entry
	for name, tf := range t.Signed.Targets {
		if !strings.HasPrefix(name, ch+"/") {
			return nil, fmt.Errorf("channel %s: target %q is outside the channel", ch, name)
		}
		if tf.Custom == nil {
			return nil, fmt.Errorf("channel %s: target %q says nothing of its package", ch, name)
		}
		var c custom
		d := json.NewDecoder(bytes.NewReader(*tf.Custom))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil {
			return nil, fmt.Errorf("channel %s: target %q: %w", ch, name, err)
		}
		if path.Base(c.Path) != strings.TrimPrefix(name, ch+"/") {
			return nil, fmt.Errorf("channel %s: target %q names the path %s", ch, name, c.Path)
		}
		sum, ok := tf.Hashes["sha256"]
		if !ok || len(sum) != sha256.Size {
			return nil, fmt.Errorf("channel %s: target %q has no sha256", ch, name)
		}
		out = append(out, Entry{Attr: c.Attr, Version: c.Version, Path: c.Path, ContentHash: c.ContentHash,
			Manifest: "sha256:" + hex.EncodeToString(sum), ManifestSize: tf.Length, PublishedBy: c.PublishedBy, Since: c.Since})
	}
	SortEntries(out)
	return out, nil
}

// SortEntries sorts entries by attr, version and path.
func SortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		if c := strings.Compare(a.Attr, b.Attr); c != 0 {
			return c
		}
		if c := strings.Compare(a.Version, b.Version); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
