package archive

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// Media types of the archive (docs/trust.md, "The archive").
const (
	// PathArtifactType is the artifactType of a store path's manifest.
	PathArtifactType = "application/vnd.hephc.store-path.v1"
	// LayerMediaType is a path's layer: a gzip-compressed tar.
	LayerMediaType = types.OCILayer
	// EnvelopeMediaType is a DSSE envelope, the artifactType and the
	// layer of an attestation's manifest.
	EnvelopeMediaType = "application/vnd.dsse.envelope.v1+json"
	// EmptyMediaType is the config of every manifest: the OCI empty
	// descriptor, "{}".
	EmptyMediaType = "application/vnd.oci.empty.v1+json"
)

// Annotation keys of a store path's manifest (and of its descriptor in
// index.json): what Nix's narinfo says of a path.
const (
	AnnotationPath        = "dev.hephc.store.path"         // /heph/store/<hash>-<name>
	AnnotationContentHash = "dev.hephc.store.content-hash" // blake3:<hex>
	AnnotationSize        = "dev.hephc.store.size"         // bytes, decimal
	AnnotationReferences  = "dev.hephc.store.references"   // store paths, sorted, space-separated
	AnnotationDeriver     = "dev.hephc.store.deriver"      // derivation hash
	AnnotationCA          = "dev.hephc.store.ca"           // a fixed-output path's pin
	AnnotationGoModule    = "dev.hephc.store.go-module"    // module@version of an h1: pin
	AnnotationDiffID      = "dev.hephc.layer.diff-id"      // sha256:<hex> of the uncompressed layer
	AnnotationRefName     = "org.opencontainers.image.ref.name"
	AnnotationPredicate   = "dev.hephc.attestation.predicate-type"
)

// emptyConfig is the OCI empty descriptor's content and digest.
var (
	emptyConfig     = []byte("{}")
	emptyConfigHash = v1.Hash{Algorithm: "sha256", Hex: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
)

// Entry is one store path of an archive: what its manifest says.
type Entry struct {
	Path        store.Path
	ContentHash store.OutputHash
	Size        int64
	References  []store.Path // sorted
	Deriver     store.DrvHash
	CA          string // a fixed-output path's pin, "" for any other
	GoModule    string // module@version, for an h1: pin
	DiffID      v1.Hash
	Layer       v1.Descriptor // the compressed layer blob
	Manifest    v1.Descriptor // the path's manifest
}

// Subject returns what statements about e are about.
func (e *Entry) Subject() trust.Subject {
	return SubjectOf(e.Path, e.ContentHash, e.DiffID, e.References, e.Deriver)
}

// SubjectOf returns the statement subject of a store path.
func SubjectOf(p store.Path, content store.OutputHash, diffID v1.Hash, refs []store.Path, deriver store.DrvHash) trust.Subject {
	s := trust.Subject{Path: p.String(), ContentHash: content.String(), LayerDigest: diffID.String(), Deriver: deriver.String()}
	for _, r := range refs {
		s.References = append(s.References, r.String())
	}
	slices.Sort(s.References)
	return s
}

// annotations returns e's manifest annotations.
func (e *Entry) annotations() map[string]string {
	refs := make([]string, len(e.References))
	for i, r := range e.References {
		refs[i] = r.String()
	}
	a := map[string]string{
		AnnotationPath:        e.Path.String(),
		AnnotationContentHash: e.ContentHash.String(),
		AnnotationSize:        strconv.FormatInt(e.Size, 10),
		AnnotationReferences:  strings.Join(refs, " "),
		AnnotationDeriver:     e.Deriver.String(),
		AnnotationDiffID:      e.DiffID.String(),
	}
	if e.CA != "" {
		a[AnnotationCA] = e.CA
	}
	if e.GoModule != "" {
		a[AnnotationGoModule] = e.GoModule
	}
	return a
}

// parseEntry reads the annotations of a path's manifest m, whose
// descriptor is desc.
func parseEntry(m *v1.Manifest, desc v1.Descriptor) (*Entry, error) {
	a := m.Annotations
	e := &Entry{Manifest: desc, CA: a[AnnotationCA], GoModule: a[AnnotationGoModule]}
	var err error
	if e.Path, err = store.ParsePath(a[AnnotationPath]); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("manifest of %s: %s", e.Path, fmt.Sprintf(format, args...))
	}
	if desc.Annotations[AnnotationPath] != a[AnnotationPath] {
		return nil, fail("index.json names it %q", desc.Annotations[AnnotationPath])
	}
	if e.ContentHash, err = store.ParseOutputHash(a[AnnotationContentHash]); err != nil {
		return nil, fail("%v", err)
	}
	if e.Size, err = strconv.ParseInt(a[AnnotationSize], 10, 64); err != nil || e.Size < 0 {
		return nil, fail("size %q is not a byte count", a[AnnotationSize])
	}
	if e.Deriver, err = store.ParseDrvHash(a[AnnotationDeriver]); err != nil {
		return nil, fail("%v", err)
	}
	if refs := a[AnnotationReferences]; refs != "" {
		for _, r := range strings.Split(refs, " ") {
			p, err := store.ParsePath(r)
			if err != nil {
				return nil, fail("references: %v", err)
			}
			e.References = append(e.References, p)
		}
	}
	if !slices.IsSortedFunc(e.References, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) }) ||
		len(slices.Compact(slices.Clone(e.References))) != len(e.References) {
		return nil, fail("references are not sorted and unique")
	}
	if e.DiffID, err = v1.NewHash(a[AnnotationDiffID]); err != nil || e.DiffID.Algorithm != "sha256" {
		return nil, fail("diff id %q is not sha256:<hex>", a[AnnotationDiffID])
	}
	if m.ArtifactType != PathArtifactType {
		return nil, fail("artifactType %q, want %q", m.ArtifactType, PathArtifactType)
	}
	if m.Config.MediaType != EmptyMediaType || m.Config.Digest != emptyConfigHash {
		return nil, fail("config is not the empty descriptor")
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != LayerMediaType {
		return nil, fail("want one layer of type %s", LayerMediaType)
	}
	e.Layer = m.Layers[0]
	if e.Layer.Digest.Algorithm != "sha256" || e.Layer.Size < 0 {
		return nil, fail("layer digest %s is not sha256", e.Layer.Digest)
	}
	return e, nil
}

// PathInfoSource is what StoreSubject reads of a store.
type PathInfoSource interface {
	LockGC(ctx context.Context, exclusive bool) (*store.Lock, error)
	QueryPathInfo(ctx context.Context, p store.Path) (*store.PathInfo, bool, error)
	Physical(p store.Path) string
}

// StoreSubject returns the statement subject of the valid path p of src:
// what the store recorded, and the diff id of its layer (one read of its
// content).
func StoreSubject(ctx context.Context, src PathInfoSource, p store.Path) (trust.Subject, error) {
	gcLock, err := src.LockGC(ctx, false)
	if err != nil {
		return trust.Subject{}, err
	}
	defer gcLock.Unlock()
	info, ok, err := src.QueryPathInfo(ctx, p)
	if err != nil {
		return trust.Subject{}, err
	}
	if !ok {
		return trust.Subject{}, fmt.Errorf("%s is not a valid path of the store", p)
	}
	diff, err := DiffID(src.Physical(p), p)
	if err != nil {
		return trust.Subject{}, err
	}
	return SubjectOf(p, info.ContentHash, diff, info.References, info.Deriver), nil
}
