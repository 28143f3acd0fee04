package archive

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// forge replaces the layer of target in the layout in dir with the tar
// tarBytes (announcing size bytes of content, or what it did when size is
// -1) and has signers attest the new bytes: what a compromised
// quorum could publish. Only the layer reader stands in the way.
func forge(t *testing.T, dir string, target store.Path, tarBytes []byte, size int64, signers ...string) {
	t.Helper()
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	l := layout.Path(dir)
	var e *Entry
	for _, x := range a.Entries {
		if x.Path == target {
			e = x
		}
	}
	old := e.Manifest.Digest
	if size >= 0 {
		e.Size = size
	}
	z := gz(tarBytes)
	e.Layer = v1.Descriptor{MediaType: LayerMediaType, Size: int64(len(z)), Digest: hashOf(z)}
	e.DiffID = hashOf(tarBytes)
	if err := l.WriteBlob(e.Layer.Digest, nopCloser(z)); err != nil {
		t.Fatal(err)
	}
	m := &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: PathArtifactType,
		Config: emptyDescriptor(), Layers: []v1.Descriptor{e.Layer}, Annotations: e.annotations()}
	d, err := writeJSONBlob(l, m)
	if err != nil {
		t.Fatal(err)
	}
	d.MediaType, d.ArtifactType = types.OCIManifestSchema1, PathArtifactType
	d.Annotations = map[string]string{AnnotationPath: target.String(), AnnotationRefName: target.Hash.String()}
	e.Manifest = d
	var idx v1.IndexManifest
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	json.Unmarshal(b, &idx)
	var out []v1.Descriptor
	for _, x := range idx.Manifests {
		switch {
		case x.Digest == old:
			out = append(out, d)
		case x.ArtifactType == EnvelopeMediaType && x.Annotations[AnnotationPath] == target.String():
		default:
			out = append(out, x)
		}
	}
	for _, s := range signers {
		env, err := trust.Sign(&trust.Claim{Kind: trust.Built, Subject: e.Subject(), Builder: "forger", Time: testNow}, testKey(t, s))
		if err != nil {
			t.Fatal(err)
		}
		ad, err := writeAttestation(l, e, env)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ad)
	}
	idx.Manifests = out
	b, _ = json.Marshal(&idx)
	os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644)
}

// Every hostile layer, even one a quorum signed, is refused by import:
// nothing imported, the store as it was, nothing left in its tmp.
func TestImportRefusesHostileLayers(t *testing.T) {
	src := newStore(t)
	ps := sample(t, src) // app, lib
	signAll(t, src, ps, "alice", "bob")
	good := export(t, src, ps)
	app := ps[0]
	r := LayerPrefix + app.Base()
	reg := func(name string, mode int64) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: 1}, body: "x"}
	}
	cases := map[string]struct {
		es   []entry
		size int64
		want string
	}{
		"path traversal":        {[]entry{dir(r), file(r+"/../../../../etc/cron.d/x", "x")}, -1, ". or .. element"},
		"outside its own path":  {[]entry{dir(r), file(LayerPrefix+ps[1].Base()+"/lib/libx.so", "evil")}, -1, "outside"},
		"setuid":                {[]entry{dir(r), reg(r+"/bin", 0o4755)}, -1, "setuid"},
		"device":                {[]entry{dir(r), {hdr: tar.Header{Typeflag: tar.TypeBlock, Name: r + "/disk", Devmajor: 8}}}, -1, "device"},
		"hard link":             {[]entry{dir(r), {hdr: tar.Header{Typeflag: tar.TypeLink, Name: r + "/passwd", Linkname: "etc/passwd"}}}, -1, "hard link"},
		"whiteout":              {[]entry{dir(r), file(r+"/.wh.lib", "")}, -1, "whiteout"},
		"decompression bomb":    {[]entry{dir(r), file(r+"/zeros", strings.Repeat("\x00", 8<<20))}, 8 << 20, "decompression bomb"},
		"bigger than announced": {[]entry{dir(r), file(r+"/big", strings.Repeat("y", 4096))}, -1, "more bytes than the 96 announced"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dirCopy := copyDir(t, good)
			forge(t, dirCopy, app, tarOf(t, tc.es...), tc.size, "alice", "bob")
			dst := newStore(t)
			before := storeState(t, dst)
			_, err := Import(t.Context(), dst, dirCopy, ImportOptions{Policies: []*trust.Policy{policy(t, 2)}, Now: testNow,
				Attestations: trust.StoreDir(dst.Dir), Limits: LayerLimits{MaxBytes: 1 << 20}})
			if !IsRefused(err) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing imported") {
				t.Fatalf("got %v, want a refusal saying %q", err, tc.want)
			}
			if storeState(t, dst) != before {
				t.Fatal("the store changed")
			}
			if tmp, _ := os.ReadDir(filepath.Join(dst.Dir, "tmp")); len(tmp) != 0 {
				t.Fatalf("left in tmp: %v", tmp)
			}
		})
	}
}
