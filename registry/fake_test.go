package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// fakeRegistry serves what it holds as a registry with the referrers API
// does, and misbehaves as a test asks: only for hostile registries (the
// real ones are in registry_test.go).
type fakeRegistry struct {
	t         testing.TB
	mu        sync.Mutex
	manifests map[string][]byte // by tag and by digest
	blobs     map[v1.Hash][]byte
	referrers map[v1.Hash][]v1.Descriptor
	entries   map[store.Path]*archive.Entry

	// lie serves other bytes for a blob; fail answers 500 to the
	// requests it matches; stall sends the first stall bytes of a
	// blob, then nothing until the client gives up; cut sends them and
	// closes the connection.
	lie        map[v1.Hash][]byte
	fail       func(*http.Request) bool
	stallBlob  v1.Hash
	stallAfter int
	cutBlob    v1.Hash
	// started is closed when a stalled blob has started.
	started chan struct{}
}

// newFake serves the paths ps of src and their attestations.
func newFake(t testing.TB, src *store.Store, ps []store.Path) (*fakeRegistry, Ref) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	if _, err := archive.Export(context.Background(), src, ps, dir, archive.ExportOptions{Attestations: trust.StoreDir(src.Dir)}); err != nil {
		t.Fatal(err)
	}
	f := &fakeRegistry{t: t, manifests: map[string][]byte{}, blobs: map[v1.Hash][]byte{}, referrers: map[v1.Hash][]v1.Descriptor{},
		entries: map[store.Path]*archive.Entry{}, lie: map[v1.Hash][]byte{}, started: make(chan struct{})}
	blobs, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	for _, b := range blobs {
		data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", b.Name()))
		if err != nil {
			t.Fatal(err)
		}
		f.blobs[v1.Hash{Algorithm: "sha256", Hex: b.Name()}] = data
	}
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range a.Entries {
		f.entries[e.Path] = e
		f.manifests[Tag(e.Path)] = f.blobs[e.Manifest.Digest]
		f.manifests[e.Manifest.Digest.String()] = f.blobs[e.Manifest.Digest]
		for _, env := range a.Envelopes[e.Path] {
			f.attest(e, env)
		}
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	ref, err := ParseRef("oci://" + srv.Listener.Addr().String() + "/cache")
	if err != nil {
		t.Fatal(err)
	}
	return f, ref
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	fail := f.fail != nil && f.fail(r)
	f.mu.Unlock()
	if fail {
		http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"the disk is on fire"}]}`, http.StatusInternalServerError)
		return
	}
	if r.URL.Path == "/v2/" {
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/cache/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	kind, ref, _ := strings.Cut(rest, "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch kind {
	case "manifests":
		b, ok := f.manifests[ref]
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
		w.Write(b)
	case "referrers":
		h, _ := v1.NewHash(ref)
		b, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: f.referrers[h]})
		w.Header().Set("Content-Type", string(types.OCIImageIndex))
		w.Write(b)
	case "blobs":
		h, _ := v1.NewHash(ref)
		b, ok := f.blobs[h]
		if lie, ok2 := f.lie[h]; ok2 {
			b, ok = lie, true
		}
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		switch h {
		case f.stallBlob:
			w.Write(b[:f.stallAfter])
			w.(http.Flusher).Flush()
			close(f.started)
			f.mu.Unlock()
			<-r.Context().Done()
			f.mu.Lock()
		case f.cutBlob:
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			w.Write(b)
		}
	default:
		http.NotFound(w, r)
	}
}

// attest adds the envelope env as a referrer of e's manifest.
func (f *fakeRegistry) attest(e *archive.Entry, env []byte) {
	envDesc := v1.Descriptor{MediaType: archive.EnvelopeMediaType, Size: int64(len(env)), Digest: digestOf(env)}
	f.blobs[envDesc.Digest] = env
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: archive.EnvelopeMediaType,
		Config: emptyConfigDescriptor(), Layers: []v1.Descriptor{envDesc},
		Subject: &v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: e.Manifest.Size, Digest: e.Manifest.Digest}}
	b, _ := json.Marshal(m)
	d := v1.Descriptor{MediaType: types.OCIManifestSchema1, ArtifactType: archive.EnvelopeMediaType, Size: int64(len(b)), Digest: digestOf(b)}
	f.manifests[d.Digest.String()] = b
	f.referrers[e.Manifest.Digest] = append(f.referrers[e.Manifest.Digest], d)
}

// forge replaces the manifest of p with one for the layer tarBytes
// (announcing size bytes of content, or what it did when size is -1),
// changed further by edit, and has signers attest it: what a registry
// holding a compromised quorum's signatures could serve.
func (f *fakeRegistry) forge(p store.Path, tarBytes []byte, size int64, edit func(*archive.Entry), signers ...string) *archive.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := *f.entries[p]
	if tarBytes != nil {
		z := gz(tarBytes)
		e.Layer = v1.Descriptor{MediaType: archive.LayerMediaType, Size: int64(len(z)), Digest: digestOf(z)}
		e.DiffID = digestOf(tarBytes)
		f.blobs[e.Layer.Digest] = z
	}
	if size >= 0 {
		e.Size = size
	}
	if edit != nil {
		edit(&e)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: archive.PathArtifactType,
		Config: emptyConfigDescriptor(), Layers: []v1.Descriptor{e.Layer}, Annotations: annotations(&e)}
	b, _ := json.Marshal(m)
	e.Manifest = v1.Descriptor{MediaType: types.OCIManifestSchema1, ArtifactType: archive.PathArtifactType, Size: int64(len(b)), Digest: digestOf(b)}
	f.manifests[Tag(p)] = b
	f.manifests[e.Manifest.Digest.String()] = b
	f.entries[p] = &e
	for _, s := range signers {
		f.attest(&e, signSubject(f.t, nil, p, e.Subject(), s))
	}
	return &e
}

// annotations are what the archive writes of e.
func annotations(e *archive.Entry) map[string]string {
	var refs []string
	for _, r := range e.References {
		refs = append(refs, r.String())
	}
	a := map[string]string{
		archive.AnnotationPath:        e.Path.String(),
		archive.AnnotationContentHash: e.ContentHash.String(),
		archive.AnnotationSize:        strconv.FormatInt(e.Size, 10),
		archive.AnnotationReferences:  strings.Join(refs, " "),
		archive.AnnotationDeriver:     e.Deriver.String(),
		archive.AnnotationDiffID:      e.DiffID.String(),
	}
	if e.CA != "" {
		a[archive.AnnotationCA] = e.CA
	}
	if e.GoModule != "" {
		a[archive.AnnotationGoModule] = e.GoModule
	}
	return a
}

func emptyConfigDescriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: archive.EmptyMediaType, Size: 2, Digest: digestOf([]byte("{}"))}
}

func digestOf(b []byte) v1.Hash {
	h := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h[:])}
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

func tarDir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o555}}
}

func tarFile(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: int64(len(body))}, body: body}
}

func tarOf(t testing.TB, es ...tarEntry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return b.Bytes()
}
