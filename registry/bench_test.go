package registry

import (
	"context"
	"testing"

	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/internal/registrytest"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// benchStore holds pathtest.BenchPaths (64 MiB in 8 paths), attested by
// alice and bob.
func benchStore(b *testing.B) (*store.Store, []store.Path, int64) {
	b.Helper()
	s := newStore(b)
	ps, total := pathtest.BenchPaths(b, s)
	sign(b, s, ps, "alice", "bob")
	return s, ps, total
}

// BenchmarkPush pushes the 64 MiB of benchStore to a fresh repository of
// each real registry (export, upload, attestations).
func BenchmarkPush(b *testing.B) {
	s, ps, total := benchStore(b)
	for _, reg := range registrytest.All(b) {
		b.Run(reg.Name, func(b *testing.B) {
			b.SetBytes(total)
			for i := 0; i < b.N; i++ {
				ref, _ := ParseRef(reg.Repo("bench"))
				if _, err := (&Client{}).Push(context.Background(), s, ps, ref, PushOptions{Attestations: trust.StoreDir(s.Dir)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSubstitute substitutes them into an empty store whose owner
// needs two signatures: every check, then store.Install.
func BenchmarkSubstitute(b *testing.B) {
	s, ps, total := benchStore(b)
	for _, reg := range registrytest.All(b) {
		b.Run(reg.Name, func(b *testing.B) {
			ref, _ := ParseRef(reg.Repo("bench"))
			if _, err := (&Client{}).Push(context.Background(), s, ps, ref, PushOptions{Attestations: trust.StoreDir(s.Dir)}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(total)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dst := newStore(b)
				b.StartTimer()
				res, err := (&Client{}).Substitute(context.Background(), dst, wants(ps...), SubstituteOptions{Caches: []Ref{ref}, OwnerPolicies: []*trust.Policy{testPolicy(b, 2)}, Now: testNow})
				if err != nil || len(res.Substituted) != len(ps) {
					b.Fatalf("%+v %v", res, err)
				}
			}
		})
	}
}
