package registry

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"hephc.dev/hephc/internal/registrytest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/trust"
)

// A closure pushed to each real registry comes back into an empty store
// whose owner needs two signatures: bytes, references and attestations
// as they were. A third signature asked for: nothing substituted, and
// each path says why. Pushing again sends nothing.
func TestPushSubstituteRealRegistries(t *testing.T) {
	for _, reg := range registrytest.All(t) {
		t.Run(reg.Name, func(t *testing.T) {
			ctx := context.Background()
			src := newStore(t)
			ps := sample(t, src) // app, lib
			sign(t, src, ps, "alice", "bob")
			ref, err := ParseRef(reg.Repo("cache"))
			if err != nil {
				t.Fatal(err)
			}
			c := &Client{}
			res, err := c.Push(ctx, src, ps, ref, PushOptions{Attestations: trust.StoreDir(src.Dir)})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Pushed) != 2 || res.Attestations != 4 || res.Uploaded < res.LayerBytes {
				t.Fatalf("pushed %d paths, %d attestations, %d of %d bytes; want 2, 4, all", len(res.Pushed), res.Attestations, res.Uploaded, res.LayerBytes)
			}
			// The registry keeps the attestations as referrers: by its API
			// (v3), or under the tag schema's tag (2.8).
			fallback := "sha256-" + res.Pushed[0].Manifest.Digest.Hex
			req, _ := http.NewRequest(http.MethodGet, "http://"+reg.Addr+"/v2/"+ref.Repo.RepositoryStr()+"/manifests/"+fallback, nil)
			req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got, want := resp.StatusCode == http.StatusOK, !reg.Referrers; got != want {
				t.Errorf("the tag schema's tag %s exists: %v, want %v", fallback, got, want)
			}

			// Again: nothing is sent but the attestation manifests' PUTs.
			again, err := c.Push(ctx, src, ps, ref, PushOptions{Attestations: trust.StoreDir(src.Dir)})
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Pushed) != 0 || len(again.Present) != 2 || again.Uploaded > 8<<10 {
				t.Errorf("pushing again: %d pushed, %d present, %d bytes sent", len(again.Pushed), len(again.Present), again.Uploaded)
			}

			// Three signatures needed: nothing substituted, each path says why.
			strict := newStore(t)
			before := storeState(t, strict)
			got, err := c.Substitute(ctx, strict, wants(ps...), SubstituteOptions{Caches: []Ref{ref}, OwnerPolicies: []*trust.Policy{testPolicy(t, 3)}, Now: testNow, Attestations: trust.StoreDir(strict.Dir)})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Substituted) != 0 || len(got.Refused) != 2 {
				t.Fatalf("substituted %v, refused %v; want none, both", got.Substituted, got.Refused)
			}
			for _, r := range got.Refused {
				if !strings.Contains(r.Reason, "2 of 3 signatures: alice, bob built or reproduced it; missing any 1 of carol") {
					t.Errorf("%s refused for %q", r.Path, r.Reason)
				}
			}
			if storeState(t, strict) != before {
				t.Error("the store changed")
			}
			tmpEmpty(t, strict)

			// Two: both substituted, lib first.
			dst := newStore(t)
			got, err = c.Substitute(ctx, dst, wants(ps...), SubstituteOptions{Caches: []Ref{ref}, OwnerPolicies: []*trust.Policy{testPolicy(t, 2)}, Now: testNow, Attestations: trust.StoreDir(dst.Dir)})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Refused) != 0 || len(got.Substituted) != 2 || got.Substituted[0] != ps[1] {
				t.Fatalf("substituted %v, refused %v", got.Substituted, got.Refused)
			}
			for _, p := range ps {
				a, _, _ := src.QueryPathInfo(ctx, p)
				b, ok, err := dst.QueryPathInfo(ctx, p)
				if err != nil || !ok || a.ContentHash != b.ContentHash || len(a.References) != len(b.References) {
					t.Errorf("%s: got %+v, want %+v", p, b, a)
				}
				envs, _ := trust.StoreDir(dst.Dir).List(p.Base())
				if len(envs) != 2 {
					t.Errorf("%s: %d attestations kept, want 2", p, len(envs))
				}
			}
			if bad, n, err := realize.Verify(ctx, dst, nil, realize.VerifyOptions{}); err != nil || len(bad) != 0 || n != 2 {
				t.Errorf("verify: %d paths, problems %v, %v", n, bad, err)
			}
			tmpEmpty(t, dst)

			// A store that has them all asks nothing.
			got, err = c.Substitute(ctx, dst, wants(ps...), SubstituteOptions{Caches: []Ref{ref}, OwnerPolicies: []*trust.Policy{testPolicy(t, 2)}, Now: testNow})
			if err != nil || len(got.Substituted)+len(got.Refused)+len(got.Missing) != 0 {
				t.Errorf("again: %+v %v", got, err)
			}
		})
	}
}
