package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/store"
)

// found is a store path as one cache has it: its manifest's entry and
// the envelopes of its attestations (not yet verified).
type found struct {
	from      *reader
	entry     *archive.Entry
	envelopes [][]byte
	// skipped says which attestations were not read, and why.
	skipped []string
}

// lookup finds p in r's repository: the manifest its tag names, checked
// as the archive checks a path's manifest, and the attestations that
// refer to it. ok is false when the repository has no manifest for p.
// tmp is a directory lookup may write into.
func (r *reader) lookup(ctx context.Context, p store.Path, tmp string) (f *found, ok bool, err error) {
	b, digest, ok, err := r.manifest(ctx, Tag(p), maxManifestSize, string(types.OCIManifestSchema1))
	if err != nil || !ok {
		return nil, false, err
	}
	e, err := checkManifest(b, digest, tmp)
	if err != nil {
		return nil, false, err
	}
	if e.Path != p {
		return nil, false, fmt.Errorf("the tag %s holds the manifest of %s", Tag(p), e.Path)
	}
	f = &found{from: r, entry: e}
	descs, err := r.referrers(ctx, digest, archive.EnvelopeMediaType)
	if err != nil {
		return nil, false, err
	}
	if len(descs) > maxAttestations {
		f.skipped = append(f.skipped, fmt.Sprintf("%d attestations beyond the first %d", len(descs)-maxAttestations, maxAttestations))
		descs = descs[:maxAttestations]
	}
	for _, d := range descs {
		env, err := r.attestation(ctx, d, digest)
		if err != nil {
			f.skipped = append(f.skipped, fmt.Sprintf("attestation %s: %v", d.Digest, err))
			continue
		}
		f.envelopes = append(f.envelopes, env)
	}
	return f, true, nil
}

// attestation reads the envelope of the attestation manifest d, whose
// subject must be the manifest subject.
func (r *reader) attestation(ctx context.Context, d v1.Descriptor, subject v1.Hash) ([]byte, error) {
	if d.Size > maxManifestSize {
		return nil, fmt.Errorf("a manifest of %d bytes", d.Size)
	}
	b, _, ok, err := r.manifest(ctx, d.Digest.String(), maxManifestSize, string(types.OCIManifestSchema1))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("listed as a referrer, but not in the registry")
	}
	var m v1.Manifest
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
		return nil, err
	}
	if m.SchemaVersion != 2 || m.MediaType != types.OCIManifestSchema1 || m.ArtifactType != archive.EnvelopeMediaType ||
		m.Subject == nil || len(m.Layers) != 1 || m.Layers[0].MediaType != archive.EnvelopeMediaType {
		return nil, fmt.Errorf("want an OCI manifest of artifactType %s, a subject and one envelope", archive.EnvelopeMediaType)
	}
	if m.Subject.Digest != subject {
		return nil, fmt.Errorf("its subject is %s, not the path's manifest %s", m.Subject.Digest, subject)
	}
	return r.smallBlob(ctx, m.Layers[0], maxEnvelopeSize)
}

// checkManifest checks the manifest b (whose digest is digest) of a store
// path exactly as the archive checks it: it is written into dir as a
// layout of one path and read with archive.Open. Nothing but its layer
// is left to check.
func checkManifest(b []byte, digest v1.Hash, dir string) (*archive.Entry, error) {
	var m v1.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	dir, err := os.MkdirTemp(dir, "manifest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	idx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType:    types.OCIManifestSchema1,
		ArtifactType: archive.PathArtifactType,
		Digest:       digest,
		Size:         int64(len(b)),
		Annotations:  map[string]string{archive.AnnotationPath: m.Annotations[archive.AnnotationPath]},
	}}})
	if err != nil {
		return nil, err
	}
	for name, content := range map[string][]byte{
		"oci-layout":                 []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json":                 idx,
		"blobs/sha256/" + digest.Hex: b,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return nil, err
		}
	}
	a, err := archive.Open(dir)
	if err != nil {
		// Not "reading archive DIR: …": the directory is this one's.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	if len(a.Entries) != 1 {
		return nil, fmt.Errorf("manifest %s: not the manifest of a store path", digest)
	}
	return a.Entries[0], nil
}
