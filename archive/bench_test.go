package archive

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// benchStore holds pathtest.BenchPaths (64 MiB in 8 paths), attested by
// alice and bob.
func benchStore(b *testing.B) (*store.Store, []store.Path, int64) {
	b.Helper()
	s := newStore(b)
	ps, total := pathtest.BenchPaths(b, s)
	signAll(b, s, ps, "alice", "bob")
	return s, ps, total
}

// BenchmarkExport writes the 64 MiB of benchStore as a layout.
func BenchmarkExport(b *testing.B) {
	s, ps, total := benchStore(b)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(b.TempDir(), "oci")
		if _, err := Export(context.Background(), s, ps, dir, ExportOptions{Attestations: trust.StoreDir(s.Dir)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImport reads it into an empty store, checking everything.
func BenchmarkImport(b *testing.B) {
	s, ps, total := benchStore(b)
	dir := export(b, s, ps)
	pol := policy(b, 2)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dst := newStore(b)
		b.StartTimer()
		res, err := importInto(b, dst, dir, pol)
		if err != nil || len(res.Imported) != len(ps) {
			b.Fatal(err)
		}
	}
}

// BenchmarkTarCreate and BenchmarkTarExtract are the baseline: GNU tar,
// no compression, of the same paths.
func BenchmarkTarCreate(b *testing.B) {
	tarBin := lookTar(b)
	s, _, total := benchStore(b)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(b.TempDir(), "store.tar")
		if o, err := exec.Command(tarBin, "-cf", out, "-C", filepath.Join(s.Dir, "store"), ".").CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, o)
		}
	}
}

func BenchmarkTarExtract(b *testing.B) {
	tarBin := lookTar(b)
	s, _, total := benchStore(b)
	archive := filepath.Join(b.TempDir(), "store.tar")
	if o, err := exec.Command(tarBin, "-cf", archive, "-C", filepath.Join(s.Dir, "store"), ".").CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, o)
	}
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := b.TempDir()
		if o, err := exec.Command(tarBin, "-xf", archive, "-C", dst).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, o)
		}
		b.StopTimer()
		exec.Command("chmod", "-R", "u+w", dst).Run()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

func lookTar(b *testing.B) string {
	t, err := exec.LookPath("tar")
	if err != nil {
		b.Skip("no tar")
	}
	return t
}

// BenchmarkSign signs one path's statement (paths/s); BenchmarkVerify
// verifies two people's envelopes of one path and evaluates the policy.
func BenchmarkSign(b *testing.B) {
	s, ps, _ := benchStore(b)
	sub, err := StoreSubject(context.Background(), s, ps[0])
	if err != nil {
		b.Fatal(err)
	}
	k := testKey(b, "alice")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := trust.Sign(&trust.Claim{Kind: trust.Built, Subject: sub, Builder: "bench", Time: testNow}, k); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "paths/s")
}

func BenchmarkVerify(b *testing.B) {
	s, ps, _ := benchStore(b)
	sub, _ := StoreSubject(context.Background(), s, ps[0])
	envs, err := trust.StoreDir(s.Dir).List(ps[0].Base())
	if err != nil || len(envs) != 2 {
		b.Fatal(err)
	}
	pol := policy(b, 2)
	keys := pol.Keys()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var atts []trust.Attestation
		for _, e := range envs {
			v, err := trust.VerifyEnvelope(e, keys)
			if err != nil {
				b.Fatal(err)
			}
			atts = append(atts, v.Attestations...)
		}
		if d := pol.Evaluate(trust.Candidate{Subject: sub}, atts, testNow); !d.Admitted() {
			b.Fatal(d.Violations)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "paths/s")
}

// BenchmarkSubject is what signing a path costs besides the signature:
// the diff id of its layer (one read of 8 MiB).
func BenchmarkSubject(b *testing.B) {
	s, ps, _ := benchStore(b)
	b.SetBytes(8 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := StoreSubject(context.Background(), s, ps[i%len(ps)]); err != nil {
			b.Fatal(err)
		}
	}
}
