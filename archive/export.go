package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// Source is what Export reads of a store.
type Source interface {
	PathInfoSource
	LoadDerivation(ctx context.Context, h store.DrvHash) (*store.SavedDerivation, bool, error)
}

// ExportOptions say what Export adds besides the paths.
type ExportOptions struct {
	// Attestations, when not "", is where the store keeps its paths'
	// attestations; each is added as a referrer of its path.
	Attestations trust.Dir
}

// ExportResult is what Export wrote.
type ExportResult struct {
	Entries      []*Entry
	Attestations int
	// Bytes is the size of the layers written.
	Bytes int64
}

// Export writes the store paths ps (valid in src) as an OCI image layout
// in dir, which must not exist or be empty: one manifest per path with its
// layer, its attestations as manifests whose subject is the path's, and
// index.json listing them all, paths sorted, then attestations sorted. The
// same paths and attestations give the same bytes on every machine.
func Export(ctx context.Context, src Source, ps []store.Path, dir string, opts ExportOptions) (*ExportResult, error) {
	if err := emptyDir(dir); err != nil {
		return nil, err
	}
	// The paths stay valid while they are read.
	gcLock, err := src.LockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	l, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("exporting to %s: %w", dir, err)
	}
	if err := l.WriteBlob(emptyConfigHash, nopCloser(emptyConfig)); err != nil {
		return nil, fmt.Errorf("exporting to %s: %w", dir, err)
	}
	ps = append([]store.Path(nil), ps...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
	res := &ExportResult{}
	var paths, atts []v1.Descriptor
	for i, p := range ps {
		if i > 0 && ps[i-1] == p {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := exportPath(ctx, src, l, p)
		if err != nil {
			return nil, err
		}
		res.Entries = append(res.Entries, e)
		res.Bytes += e.Layer.Size
		paths = append(paths, e.Manifest)
		if opts.Attestations == "" {
			continue
		}
		envs, err := opts.Attestations.List(p.Base())
		if err != nil {
			return nil, err
		}
		for _, env := range envs {
			d, err := writeAttestation(l, e, env)
			if err != nil {
				return nil, fmt.Errorf("exporting an attestation of %s: %w", p, err)
			}
			atts = append(atts, d)
		}
	}
	sort.Slice(atts, func(i, j int) bool {
		a, b := atts[i].Annotations[AnnotationPath], atts[j].Annotations[AnnotationPath]
		return a < b || a == b && atts[i].Digest.Hex < atts[j].Digest.Hex
	})
	res.Attestations = len(atts)
	idx := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: append(paths, atts...)}
	b, err := json.Marshal(idx)
	if err != nil {
		return nil, err
	}
	if err := l.WriteFile("index.json", b, 0o644); err != nil {
		return nil, fmt.Errorf("exporting to %s: %w", dir, err)
	}
	return res, nil
}

// exportPath writes p's layer and manifest.
func exportPath(ctx context.Context, src Source, l layout.Path, p store.Path) (*Entry, error) {
	info, ok, err := src.QueryPathInfo(ctx, p)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("exporting %s: not a valid path of the store", p)
	}
	e := &Entry{Path: p, ContentHash: info.ContentHash, Size: info.Size, References: info.References, Deriver: info.Deriver, CA: info.CA}
	if len(info.CA) > 3 && info.CA[:3] == "h1:" {
		if e.GoModule, err = goModule(ctx, src, info.Deriver); err != nil {
			return nil, fmt.Errorf("exporting %s: %w", p, err)
		}
	}
	li, err := writeLayerBlob(l, src.Physical(p), p)
	if err != nil {
		return nil, err
	}
	e.DiffID = li.DiffID
	e.Layer = v1.Descriptor{MediaType: LayerMediaType, Size: li.Size, Digest: li.Digest}
	m := &v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  PathArtifactType,
		Config:        emptyDescriptor(),
		Layers:        []v1.Descriptor{e.Layer},
		Annotations:   e.annotations(),
	}
	d, err := writeJSONBlob(l, m)
	if err != nil {
		return nil, fmt.Errorf("exporting %s: %w", p, err)
	}
	d.MediaType, d.ArtifactType = types.OCIManifestSchema1, PathArtifactType
	d.Annotations = map[string]string{AnnotationPath: p.String(), AnnotationRefName: p.Hash.String()}
	e.Manifest = d
	return e, nil
}

// goModule returns module@version of the fixed-output derivation h, for
// its h1: pin.
func goModule(ctx context.Context, src Source, h store.DrvHash) (string, error) {
	sd, ok, err := src.LoadDerivation(ctx, h)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("its h1: pin needs its module and version, and the store does not have its derivation %s", h)
	}
	mod, _ := sd.Derivation.Attrs["module"].(string)
	ver, _ := sd.Derivation.Attrs["version"].(string)
	if mod == "" || ver == "" {
		return "", fmt.Errorf("its h1: pin needs attrs.module and attrs.version, which derivation %s lacks", h)
	}
	return mod + "@" + ver, nil
}

// writeLayerBlob writes p's layer into the layout's blobs, through a
// temporary file renamed to its digest.
func writeLayerBlob(l layout.Path, root string, p store.Path) (*LayerInfo, error) {
	dir := filepath.Join(string(l), "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".layer-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	li, err := WriteLayer(f, root, p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, li.Digest.Hex)); err != nil {
		return nil, err
	}
	return li, nil
}

// writeAttestation writes envelope env of e's path and its manifest, and
// returns the manifest's descriptor.
func writeAttestation(l layout.Path, e *Entry, env []byte) (v1.Descriptor, error) {
	c, _, err := trust.ReadClaim(env)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if c.Subject.Path != e.Path.String() {
		return v1.Descriptor{}, fmt.Errorf("it is about %s", c.Subject.Path)
	}
	h := sha256.Sum256(env)
	envDesc := v1.Descriptor{MediaType: EnvelopeMediaType, Size: int64(len(env)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h[:])}}
	if err := l.WriteBlob(envDesc.Digest, nopCloser(env)); err != nil {
		return v1.Descriptor{}, err
	}
	predicate := trust.ProvenanceType
	if c.Kind == trust.Reproduced {
		predicate = trust.ReproductionType
	}
	subject := v1.Descriptor{MediaType: e.Manifest.MediaType, Size: e.Manifest.Size, Digest: e.Manifest.Digest}
	m := &v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  EnvelopeMediaType,
		Config:        emptyDescriptor(),
		Layers:        []v1.Descriptor{envDesc},
		Subject:       &subject,
		Annotations:   map[string]string{AnnotationPredicate: predicate, AnnotationPath: e.Path.String()},
	}
	d, err := writeJSONBlob(l, m)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d.MediaType, d.ArtifactType = types.OCIManifestSchema1, EnvelopeMediaType
	d.Annotations = map[string]string{AnnotationPath: e.Path.String(), AnnotationPredicate: predicate}
	return d, nil
}

func writeJSONBlob(l layout.Path, v any) (v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	h := sha256.Sum256(b)
	d := v1.Descriptor{Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h[:])}}
	return d, l.WriteBlob(d.Digest, nopCloser(b))
}

func emptyDescriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: EmptyMediaType, Size: int64(len(emptyConfig)), Digest: emptyConfigHash, Data: emptyConfig}
}

// emptyDir reports whether dir can take a new layout: missing or empty.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("exporting to %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("exporting to %s: the directory is not empty", dir)
	}
	return nil
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func nopCloser(b []byte) readCloser { return readCloser{bytes.NewReader(b)} }
