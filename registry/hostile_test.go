package registry

import (
	"archive/tar"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// Every hostile registry answer is refused for the path it concerns,
// with a reason, even when a quorum signed what it serves: the path is
// not registered, the paths it does not touch are substituted, and the
// store's temporary directory is left empty.
func TestSubstituteRefusesHostileRegistries(t *testing.T) {
	src := newStore(t)
	ps := sample(t, src) // app, lib
	sign(t, src, ps, "alice", "bob")
	app, lib := ps[0], ps[1]
	r := archive.LayerPrefix + app.Base()
	reg := func(name string, mode int64) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: 1}, body: "x"}
	}
	layer := func(es ...tarEntry) func(*fakeRegistry) {
		return func(f *fakeRegistry) { f.forge(app, tarOf(t, es...), -1, nil, "alice", "bob") }
	}
	cases := []struct {
		name  string
		setup func(f *fakeRegistry)
		stall time.Duration
		want  string
		// libToo: lib is refused too (or missing) rather than substituted.
		libToo bool
	}{
		{name: "path traversal", setup: layer(tarDir(r), tarFile(r+"/../../../../etc/cron.d/x", "x")), want: ". or .. element"},
		{name: "outside its own path", setup: layer(tarDir(r), tarFile(archive.LayerPrefix+lib.Base()+"/lib/libx.so", "evil")), want: "outside"},
		{name: "setuid", setup: layer(tarDir(r), reg(r+"/bin", 0o4755)), want: "setuid"},
		{name: "device", setup: layer(tarDir(r), tarEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: r + "/disk", Devmajor: 8}}), want: "device"},
		{name: "hard link", setup: layer(tarDir(r), tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: r + "/passwd", Linkname: "etc/passwd"}}), want: "hard link"},
		{name: "whiteout", setup: layer(tarDir(r), tarFile(r+"/.wh.lib", "")), want: "whiteout"},
		{name: "decompression bomb", setup: func(f *fakeRegistry) {
			f.forge(app, tarOf(t, tarDir(r), tarFile(r+"/zeros", strings.Repeat("\x00", 8<<20))), 8<<20, nil, "alice", "bob")
		}, want: "decompression bomb"},
		{name: "more than announced", setup: layer(tarDir(r), tarFile(r+"/big", strings.Repeat("y", 4096))), want: "more bytes than the"},
		{name: "blob bytes not its digest", setup: func(f *fakeRegistry) {
			// A well-formed layer of app, but not the one the manifest
			// (and its signatures) name.
			f.lie[f.entries[app].Layer.Digest] = gz(tarOf(t, tarDir(r), tarFile(r+"/bin", "")))
		}, want: "refused: "},
		{name: "corrupt blob", setup: func(f *fakeRegistry) {
			d := f.entries[app].Layer.Digest
			b := append([]byte(nil), f.blobs[d]...)
			b[len(b)-10] ^= 0xff
			f.lie[d] = b
		}, want: "corrupt"},
		{name: "content hash not the layer's", setup: func(f *fakeRegistry) {
			f.forge(app, nil, -1, func(e *archive.Entry) { e.ContentHash = f.entries[lib].ContentHash }, "alice", "bob")
		}, want: "its content hashes to"},
		{name: "references not the content's", setup: func(f *fakeRegistry) {
			f.forge(app, nil, -1, func(e *archive.Entry) { e.References = nil }, "alice", "bob")
		}, want: "its content refers to"},
		{name: "another derivation", setup: func(f *fakeRegistry) {
			f.forge(app, nil, -1, func(e *archive.Entry) { e.Deriver = lib.Hash }, "alice", "bob")
		}, want: "derivation"},
		{name: "a pin it does not have", setup: func(f *fakeRegistry) {
			f.forge(app, nil, -1, func(e *archive.Entry) { e.CA = e.ContentHash.String() })
		}, want: "pin"},
		{name: "the tag of another path", setup: func(f *fakeRegistry) {
			f.manifests[Tag(app)] = f.manifests[Tag(lib)]
		}, want: "holds the manifest of"},
		{name: "attestations of another hash", setup: func(f *fakeRegistry) {
			e := f.entries[app]
			f.referrers[e.Manifest.Digest] = nil
			other := e.Subject()
			other.ContentHash = f.entries[lib].ContentHash.String()
			for _, s := range []string{"alice", "bob"} {
				f.attest(e, signSubject(t, nil, app, other, s))
			}
		}, want: "for other bytes"},
		{name: "an unknown signer", setup: func(f *fakeRegistry) {
			e := f.entries[app]
			f.referrers[e.Manifest.Digest] = nil
			f.attest(e, signSubject(t, nil, app, e.Subject(), "alice"))
			f.attest(e, signSubject(t, nil, app, e.Subject(), "mallory"))
		}, want: "a key the policy does not know"},
		{name: "a missing reference", setup: func(f *fakeRegistry) {
			delete(f.manifests, Tag(lib))
		}, want: "is neither in the store nor substituted", libToo: true},
		{name: "a reference cycle", setup: func(f *fakeRegistry) {
			f.forge(lib, nil, -1, func(e *archive.Entry) { e.References = []store.Path{app} }, "alice", "bob")
		}, want: "refers to itself through other paths", libToo: true},
		{name: "an oversized manifest", setup: func(f *fakeRegistry) {
			f.manifests[Tag(app)] = []byte(`{"schemaVersion":2,"annotations":{"x":"` + strings.Repeat("x", 2<<20) + `"}}`)
		}, want: "more than 1048576 bytes"},
		{name: "500 for its layer", setup: func(f *fakeRegistry) {
			d := f.entries[app].Layer.Digest.String()
			f.fail = func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, d) }
		}, want: "500 Internal Server Error"},
		{name: "500 for its manifest", setup: func(f *fakeRegistry) {
			f.fail = func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/manifests/"+Tag(app)) }
		}, want: "500 Internal Server Error"},
		{name: "connection closed mid-layer", setup: func(f *fakeRegistry) {
			f.cutBlob = f.entries[app].Layer.Digest
		}, want: "unexpected EOF"},
		{name: "stalls mid-layer", setup: func(f *fakeRegistry) {
			f.stallBlob, f.stallAfter = f.entries[app].Layer.Digest, 20
		}, stall: 300 * time.Millisecond, want: "the registry sent nothing for 300ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, ref := newFake(t, src, ps)
			tc.setup(f)
			dst := newStore(t)
			c := &Client{StallTimeout: tc.stall}
			res, err := c.Substitute(context.Background(), dst, wants(ps...), SubstituteOptions{
				Caches: []Ref{ref}, OwnerPolicies: []*trust.Policy{testPolicy(t, 2)}, Now: testNow,
				Attestations: trust.StoreDir(dst.Dir), Limits: archive.LayerLimits{MaxBytes: 1 << 20},
			})
			if err != nil {
				t.Fatal(err)
			}
			var why string
			for _, r := range res.Refused {
				if r.Path == app {
					why = r.Reason
				}
			}
			t.Logf("refused: %s", why)
			if !strings.Contains(why, tc.want) {
				t.Fatalf("app refused for %q, want %q (result %+v)", why, tc.want, res)
			}
			valid, err := dst.ValidPaths(context.Background(), ps)
			if err != nil {
				t.Fatal(err)
			}
			if valid[app] || valid[lib] == tc.libToo {
				t.Errorf("valid after: app %v, lib %v", valid[app], valid[lib])
			}
			tmpEmpty(t, dst)
		})
	}
}

// A substitution stopped while a layer comes (the process killed, here
// its context) registers nothing of that path and leaves no scratch.
func TestSubstituteStoppedMidLayer(t *testing.T) {
	src := newStore(t)
	ps := sample(t, src)
	sign(t, src, ps, "alice", "bob")
	f, ref := newFake(t, src, ps)
	f.stallBlob, f.stallAfter = f.entries[ps[0]].Layer.Digest, 20
	dst := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-f.started
		cancel()
	}()
	_, err := (&Client{}).Substitute(ctx, dst, wants(ps...), SubstituteOptions{Caches: []Ref{ref}, OwnerPolicies: []*trust.Policy{testPolicy(t, 2)}, Now: testNow})
	if err != context.Canceled {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if ok, _, _ := dst.QueryPathInfo(context.Background(), ps[0]); ok != nil {
		t.Fatal("the stopped path is registered")
	}
	tmpEmpty(t, dst)
}

// Without a trust policy only fixed-output paths (checked against their
// pins) are admitted; every other path says why not.
func TestSubstituteWithoutPolicy(t *testing.T) {
	src := newStore(t)
	ps := sample(t, src)
	_, ref := newFake(t, src, ps)
	dst := newStore(t)
	res, err := (&Client{}).Substitute(context.Background(), dst, wants(ps...), SubstituteOptions{Caches: []Ref{ref}, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Substituted) != 0 || len(res.Refused) != 2 || !strings.Contains(res.Refused[0].Reason, "no trust policy says whom to trust") {
		t.Fatalf("got %+v", res)
	}
}

// Referrers that are not attestations of the path (another artifact, a
// manifest whose subject is another, one that is missing) are skipped:
// the path is admitted on the attestations that are.
func TestSubstituteSkipsJunkReferrers(t *testing.T) {
	src := newStore(t)
	ps := sample(t, src)
	sign(t, src, ps, "alice", "bob")
	f, ref := newFake(t, src, ps)
	app, lib := f.entries[ps[0]], f.entries[ps[1]]
	junk := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}`)
	jd := digestOf(junk)
	f.manifests[jd.String()] = junk
	f.referrers[app.Manifest.Digest] = append(f.referrers[app.Manifest.Digest],
		v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(junk)), Digest: jd},
		v1.Descriptor{MediaType: types.OCIManifestSchema1, ArtifactType: archive.EnvelopeMediaType, Size: 100, Digest: digestOf([]byte("gone"))})
	// An attestation of lib listed among app's referrers.
	f.referrers[app.Manifest.Digest] = append(f.referrers[app.Manifest.Digest], f.referrers[lib.Manifest.Digest][0])
	dst := newStore(t)
	res, err := (&Client{}).Substitute(context.Background(), dst, wants(ps...), SubstituteOptions{Caches: []Ref{ref}, OwnerPolicies: []*trust.Policy{testPolicy(t, 2)}, Now: testNow})
	if err != nil || len(res.Substituted) != 2 {
		t.Fatalf("got %+v, %v", res, err)
	}
}
