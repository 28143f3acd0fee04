package registry

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"hephc.dev/hephc/internal/registrytest"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// benchStore holds 8 paths of 8 MiB each (16 files of 512 KiB, half
// random bytes, half text), attested by alice and bob: archive's
// benchmark data.
func benchStore(b *testing.B) (*store.Store, []store.Path, int64) {
	b.Helper()
	s := newStore(b)
	r := rand.New(rand.NewSource(1))
	var ps []store.Path
	var total int64
	text := strings.Repeat("the quick brown fox jumps over the lazy dog 0123456789\n", 512<<10/55+1)[:512<<10]
	for i := range 8 {
		files := map[string]string{}
		for j := range 16 {
			if j%2 == 0 {
				buf := make([]byte, 512<<10)
				r.Read(buf)
				files[fmt.Sprintf("lib/f%02d.bin", j)] = string(buf)
			} else {
				files[fmt.Sprintf("share/f%02d.txt", j)] = text
			}
			total += 512 << 10
		}
		ps = append(ps, install(b, s, fmt.Sprintf("p%d", i), files))
	}
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
