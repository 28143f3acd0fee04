package channel

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// Verifier is a client's view of one server's channels: it trusts the
// root whose hash it was given, and remembers the highest version of each
// document it has accepted, so that it never accepts a lower one (a
// rollback or freeze attack). A substituter calls Verify on the documents
// the server serves, then Verified.Admit for each path before it
// installs it. Safe for concurrent use.
type Verifier struct {
	rootHash string
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]int64
}

// NewVerifier returns a verifier that trusts the root document hashing to
// rootHash ("sha256:<hex>", as RootHash gives) and judges expiry at now().
func NewVerifier(rootHash string, now func() time.Time) *Verifier {
	return &Verifier{rootHash: rootHash, now: now, seen: map[string]int64{}}
}

// Seen returns the highest version of each document accepted so far,
// for the caller to keep between runs (SetSeen).
func (v *Verifier) Seen() map[string]int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.seen)
}

// SetSeen restores what Seen returned: versions below these are refused.
func (v *Verifier) SetSeen(seen map[string]int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen = maps.Clone(seen)
}

// Verified is what a Verifier accepted: each channel's entries.
type Verified struct {
	Channels map[string][]Entry
	Versions map[string]int64
}

// Verify checks r as a TUF client does — the root is the pinned one and
// signed by its threshold; the timestamp, snapshot, targets and each
// channel are signed by the keys their delegator names, not expired at
// now, and consistent (the versions the snapshot names) — and that no
// document is at a lower version than one accepted before. On success it
// remembers the versions and returns the channels' entries.
func (v *Verifier) Verify(r *Repo) (*Verified, error) {
	// The pinned root, then each later version, each signed by the
	// threshold of the one before and its own.
	chain := append(slices.Clone(r.Roots), r.Root)
	start := -1
	for i, b := range chain {
		if subtle.ConstantTimeCompare([]byte(RootHash(b)), []byte(v.rootHash)) == 1 {
			start = i
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("channel metadata: the root hashes to %s, not the pinned %s, and no earlier root the server gives does", RootHash(r.Root), v.rootHash)
	}
	tm, err := trustedmetadata.New(chain[start])
	if err != nil {
		return nil, fmt.Errorf("channel metadata: root: %w", err)
	}
	for _, b := range chain[start+1:] {
		if _, err := tm.UpdateRoot(b); err != nil {
			return nil, fmt.Errorf("channel metadata: root version %d: %w", tm.Root.Signed.Version+1, err)
		}
	}
	now := v.now().UTC()
	tm.RefTime = now
	if _, err := tm.UpdateTimestamp(r.Timestamp); err != nil {
		return nil, fmt.Errorf("channel metadata: timestamp: %w", err)
	}
	if _, err := tm.UpdateSnapshot(r.Snapshot, false); err != nil {
		return nil, fmt.Errorf("channel metadata: snapshot: %w", err)
	}
	if _, err := tm.UpdateTargets(r.Targets); err != nil {
		return nil, fmt.Errorf("channel metadata: targets: %w", err)
	}
	out := &Verified{Channels: map[string][]Entry{}, Versions: map[string]int64{
		metadata.ROOT:      tm.Root.Signed.Version,
		metadata.TIMESTAMP: tm.Timestamp.Signed.Version,
		metadata.SNAPSHOT:  tm.Snapshot.Signed.Version,
		metadata.TARGETS:   tm.Targets[metadata.TARGETS].Signed.Version,
	}}
	for _, ch := range Names {
		t, err := tm.UpdateDelegatedTargets(r.Channels[ch], ch, metadata.TARGETS)
		if err != nil {
			return nil, fmt.Errorf("channel metadata: channel %s: %w", ch, err)
		}
		if out.Channels[ch], err = entriesOf(ch, t); err != nil {
			return nil, fmt.Errorf("channel metadata: %w", err)
		}
		out.Versions[ch] = t.Signed.Version
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, name := range sortedKeys(out.Versions) {
		if got, had := out.Versions[name], v.seen[name]; got < had {
			return nil, fmt.Errorf("channel metadata: %s is version %d, lower than version %d accepted before: refused (a rollback)", name, got, had)
		}
	}
	for name, ver := range out.Versions {
		v.seen[name] = ver
	}
	return out, nil
}

// Admit reports whether channel ch holds the store path p with the OCI
// manifest digest manifest ("sha256:<hex>"): a substituter installs
// nothing else. It returns the entry.
func (vd *Verified) Admit(ch, p, manifest string) (Entry, error) {
	if !Valid(ch) {
		return Entry{}, fmt.Errorf("%q is not a channel", ch)
	}
	for _, e := range vd.Channels[ch] {
		if e.Path != p {
			continue
		}
		if e.Manifest != manifest {
			return Entry{}, fmt.Errorf("%s: channel %s holds manifest %s, not %s", p, ch, e.Manifest, manifest)
		}
		return e, nil
	}
	return Entry{}, fmt.Errorf("%s is not in channel %s", p, ch)
}

// LoadSeen restores the versions SaveSeen wrote to path; a missing file
// is a verifier that has seen nothing yet.
func (v *Verifier) LoadSeen(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("channel versions seen: %w", err)
	}
	seen := map[string]int64{}
	if err := json.Unmarshal(b, &seen); err != nil {
		return fmt.Errorf("channel versions seen: %s: %w", path, err)
	}
	v.SetSeen(seen)
	return nil
}

// SaveSeen writes the versions accepted so far to path, atomically (a
// temporary file beside it, synced, renamed): a crash leaves the old
// file or the new one.
func (v *Verifier) SaveSeen(path string) error {
	b, err := json.Marshal(v.Seen()) // map keys sorted
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".seen-*")
	if err != nil {
		return fmt.Errorf("channel versions seen: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("channel versions seen: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("channel versions seen: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("channel versions seen: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("channel versions seen: %w", err)
	}
	return nil
}

// Manifests returns what channel ch holds as store path → manifest
// digest: the table a substituter filters the registry's answers by.
func (vd *Verified) Manifests(ch string) map[string]string {
	m := map[string]string{}
	for _, e := range vd.Channels[ch] {
		m[e.Path] = e.Manifest
	}
	return m
}
