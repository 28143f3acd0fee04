package realize_test

import (
	"context"
	"fmt"
	"runtime"
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
// -j 2 into a fresh store: one op is all 200. Each job slot's builds run
// in the slot's init (sandbox/keeper.go; HEPHC_SANDBOX_KEEPER=off: an
// init each, as before), the sandbox's small helper once built
// (sandbox/helper.go; HEPHC_SANDBOX_INIT=self: this executable).
// heap=256MB does it from a process that holds 256 MB, as hephc does
// once it has evaluated a configuration: what starting a sandbox costs
// must not grow with the caller.
func BenchmarkRealizeTrivial(b *testing.B) {
	const n = 200
	sandbox.WaitInitHelper()
	b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { benchmarkTrivial(b, n) })
	b.Run(fmt.Sprintf("n=%d,heap=256MB", n), func(b *testing.B) {
		heap := make([][]byte, 256)
		for i := range heap {
			heap[i] = make([]byte, 1<<20)
			for j := range heap[i] {
				heap[i][j] = byte(j)
			}
		}
		benchmarkTrivial(b, n)
		runtime.KeepAlive(heap)
	})
}

func benchmarkTrivial(b *testing.B, n int) {
	var cpu, children time.Duration
	for b.Loop() {
		b.StopTimer()
		f := storetest.New(b, b.TempDir())
		roots := trivialGraph(b, f, n)
		before, childrenBefore := cpuTime(), childTime()
		b.StartTimer()
		res, err := realize.Realize(context.Background(), f.St, f.G, roots, realize.Options{Jobs: 2})
		b.StopTimer()
		cpu += cpuTime() - before
		children += childTime() - childrenBefore
		b.StartTimer()
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Built) != n {
			b.Fatalf("built %d, want %d", len(res.Built), n)
		}
	}
	perDrv := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) / float64(n) }
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/float64(n), "ms/derivation")
	// CPU time (user and system: this process, the sandboxes' inits
	// and their builds) says more than the wall clock on a busy
	// machine; children is the inits' and builds' part.
	b.ReportMetric(perDrv(cpu), "cpu-ms/derivation")
	b.ReportMetric(perDrv(children), "children-cpu-ms/derivation")
}

// cpuTime is the user and system time this process and its children
// that have been waited for have used.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

// childTime is the user and system time of this process's children that
// have been waited for.
func childTime() time.Duration {
	var children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(children.Utime.Nano() + children.Stime.Nano())
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
	before := cpuTime()
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
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
