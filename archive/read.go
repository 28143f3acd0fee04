package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/store"
)

// Limits on the JSON an archive holds.
const (
	maxIndexSize    = 16 << 20
	maxManifestSize = 1 << 20
)

// Archive is an OCI image layout of store paths, read and checked but for
// its layers.
type Archive struct {
	Dir     string
	Entries []*Entry // sorted by path
	// Envelopes are each path's attestations, in index order.
	Envelopes map[store.Path][][]byte
}

// Open reads the layout in dir: index.json, every manifest and every
// envelope, each checked against its digest. Layers are read by Import.
// Anything that is not a store path or an attestation of one in this
// archive is refused.
func Open(dir string) (*Archive, error) {
	a, err := open(dir)
	if err != nil {
		return nil, fmt.Errorf("reading archive %s: %w", dir, err)
	}
	return a, nil
}

func open(dir string) (*Archive, error) {
	l, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	ol, err := readFileCapped(filepath.Join(dir, "oci-layout"), 1<<10)
	if err != nil {
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	var olv struct {
		Version string `json:"imageLayoutVersion"`
	}
	if json.Unmarshal(ol, &olv) != nil || olv.Version != "1.0.0" {
		return nil, fmt.Errorf("oci-layout: want imageLayoutVersion 1.0.0")
	}
	ib, err := readFileCapped(filepath.Join(dir, "index.json"), maxIndexSize)
	if err != nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(ib, &idx); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	if idx.SchemaVersion != 2 {
		return nil, fmt.Errorf("index.json: schema version %d, want 2", idx.SchemaVersion)
	}
	a := &Archive{Dir: dir, Envelopes: map[store.Path][][]byte{}}
	byDigest := map[v1.Hash]*Entry{}
	byPath := map[store.Path]bool{}
	var attestations []v1.Descriptor
	for _, d := range idx.Manifests {
		if d.MediaType != types.OCIManifestSchema1 {
			return nil, fmt.Errorf("index.json: %s has media type %q, want %s", d.Digest, d.MediaType, types.OCIManifestSchema1)
		}
		switch d.ArtifactType {
		case PathArtifactType:
			m, err := readManifest(l, d)
			if err != nil {
				return nil, err
			}
			e, err := parseEntry(m, d)
			if err != nil {
				return nil, err
			}
			if byPath[e.Path] {
				return nil, fmt.Errorf("%s is in the archive twice", e.Path)
			}
			byPath[e.Path] = true
			byDigest[d.Digest] = e
			a.Entries = append(a.Entries, e)
		case EnvelopeMediaType:
			attestations = append(attestations, d)
		default:
			return nil, fmt.Errorf("index.json: %s has artifact type %q, neither a store path (%s) nor an attestation (%s)", d.Digest, d.ArtifactType, PathArtifactType, EnvelopeMediaType)
		}
	}
	for _, d := range attestations {
		m, err := readManifest(l, d)
		if err != nil {
			return nil, err
		}
		if m.ArtifactType != EnvelopeMediaType || m.Subject == nil || len(m.Layers) != 1 || m.Layers[0].MediaType != EnvelopeMediaType {
			return nil, fmt.Errorf("attestation manifest %s: want artifactType %s, a subject and one envelope", d.Digest, EnvelopeMediaType)
		}
		e := byDigest[m.Subject.Digest]
		if e == nil {
			return nil, fmt.Errorf("attestation manifest %s: its subject %s is not a store path of this archive", d.Digest, m.Subject.Digest)
		}
		if m.Layers[0].Size > 1<<20 {
			return nil, fmt.Errorf("attestation manifest %s: an envelope of %d bytes", d.Digest, m.Layers[0].Size)
		}
		env, err := readBlob(l, m.Layers[0])
		if err != nil {
			return nil, fmt.Errorf("attestation of %s: %w", e.Path, err)
		}
		a.Envelopes[e.Path] = append(a.Envelopes[e.Path], env)
	}
	sort.Slice(a.Entries, func(i, j int) bool { return a.Entries[i].Path.String() < a.Entries[j].Path.String() })
	return a, nil
}

func readManifest(l layout.Path, d v1.Descriptor) (*v1.Manifest, error) {
	if d.Size > maxManifestSize {
		return nil, fmt.Errorf("manifest %s: %d bytes, more than %d", d.Digest, d.Size, maxManifestSize)
	}
	b, err := readBlob(l, d)
	if err != nil {
		return nil, err
	}
	var m v1.Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if m.SchemaVersion != 2 || m.MediaType != types.OCIManifestSchema1 {
		return nil, fmt.Errorf("manifest %s: want an OCI image manifest, schema version 2", d.Digest)
	}
	return &m, nil
}

// readBlob reads the small blob d describes and checks its size and
// digest.
func readBlob(l layout.Path, d v1.Descriptor) ([]byte, error) {
	if d.Digest.Algorithm != "sha256" || d.Size < 0 {
		return nil, fmt.Errorf("blob %s: want a sha256 digest and a size", d.Digest)
	}
	rc, err := l.Blob(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if int64(len(b)) != d.Size {
		return nil, fmt.Errorf("%w: blob %s: %d bytes, its descriptor says %d", errRefused, d.Digest, len(b), d.Size)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != d.Digest.Hex {
		return nil, fmt.Errorf("%w: blob %s: its bytes hash to sha256:%s", errRefused, d.Digest, got)
	}
	return b, nil
}

func readFileCapped(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: more than %d bytes", filepath.Base(name), max)
	}
	return b, nil
}
