package realize_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/store"
)

// trivialGraph adds n tiny independent builds, each writing one file.
func trivialGraph(b *testing.B, f *storetest.Fixture, n int) []store.DrvHash {
	roots := make([]store.DrvHash, n)
	for i := range roots {
		roots[i] = f.Step(b, fmt.Sprintf("t%d", i), nil, nil, fmt.Sprintf("single=%d", i))
	}
	return roots
}

// BenchmarkRealizeTrivial builds 200 tiny sandboxed exec derivations with
// -j 2 into a fresh store: one op is all 200. The sandbox's init is its
// small helper once built (sandbox/helper.go; HEPHC_SANDBOX_INIT=self:
// this executable, as before).
func BenchmarkRealizeTrivial(b *testing.B) {
	const n = 200
	sandbox.WaitInitHelper()
	b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
		var cpu time.Duration
		for b.Loop() {
			b.StopTimer()
			f := storetest.New(b, b.TempDir())
			roots := trivialGraph(b, f, n)
			before := cpuTime()
			b.StartTimer()
			res, err := realize.Realize(context.Background(), f.St, f.G, roots, realize.Options{Jobs: 2})
			b.StopTimer()
			cpu += cpuTime() - before
			b.StartTimer()
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Built) != n {
				b.Fatalf("built %d, want %d", len(res.Built), n)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/n, "ms/derivation")
		// CPU time (user and system: this process, the sandboxes' inits
		// and their builds) says more than the wall clock on a busy
		// machine.
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N)/n, "cpu-ms/derivation")
	})
}

// cpuTime is the user and system time this process and its children
// that have been waited for have used.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

// BenchmarkRealizeNoop realizes 200 derivations that are all valid: open
// the store, check validity, do nothing.
func BenchmarkRealizeNoop(b *testing.B) {
	dir := b.TempDir()
	f := storetest.New(b, dir)
	roots := trivialGraph(b, f, 200)
	if _, err := realize.Realize(context.Background(), f.St, f.G, roots, realize.Options{Jobs: 2}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		st, err := store.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		res, err := realize.Realize(context.Background(), st, f.G, roots, realize.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Built) != 0 {
			b.Fatalf("built %d, want none", len(res.Built))
		}
		st.Close()
	}
}
