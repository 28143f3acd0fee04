package eval_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/internal/benchconfig"
	"hephc.dev/hephc/lang"
)

// BenchmarkEvalGraph is a cold evaluation as hephc does it: files parsed
// and the graph made on the fast path with empty caches (the benchmark
// fails if the fast path refuses the configuration).
func BenchmarkEvalGraph(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			benchconfig.Write(b, dir, n)
			benchconfig.ResetPeakRSS()
			defer benchconfig.ReportPeakRSS(b)
			defer reportCPU(b, cpuTime())
			b.ResetTimer()
			for b.Loop() {
				g, ok := fastEval(dir, &eval.Fast{})
				if !ok {
					b.Fatal("the fast path refused the configuration")
				}
				if len(g.Nodes) != n {
					b.Fatalf("got %d nodes, want %d", len(g.Nodes), n)
				}
			}
		})
	}
}

// BenchmarkEvalEdit is the evaluation after one package of the
// configuration was edited, with the caches of the evaluation before it:
// only the edited file is parsed again.
func BenchmarkEvalEdit(b *testing.B) {
	for _, n := range []int{10000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			benchconfig.Write(b, dir, n)
			f := &eval.Fast{}
			if _, ok := fastEval(dir, f); !ok {
				b.Fatal("the fast path refused the configuration")
			}
			benchconfig.ResetPeakRSS()
			defer benchconfig.ReportPeakRSS(b)
			k := 0
			defer reportCPU(b, cpuTime())
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				k++
				editPackage(b, dir, (k*7919)%n, k)
				b.StartTimer()
				g, ok := fastEval(dir, f)
				if !ok || len(g.Nodes) != n {
					b.Fatal("the fast path refused the edited configuration")
				}
			}
		})
	}
}

// BenchmarkEvalEditNewProcess is what a new process (hephc eval run again)
// does after one package of the configuration was edited: a fresh
// eval.Fast, with the FileCache the evaluation before it wrote, reads the
// files, takes the unchanged ones' declarations and hashes from the cache,
// parses the edited one, hashes what the edit changed and writes the
// entries that changed. What the CLI adds (starting, the evaluation cache,
// printing) is measured by bench/compare.sh's hephc-edit row.
func BenchmarkEvalEditNewProcess(b *testing.B) {
	for _, n := range []int{10000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			benchconfig.Write(b, dir, n)
			disk := &eval.FileCache{Dir: b.TempDir(), Build: "bench"}
			if _, ok := fastEvalAt(dir, &eval.Fast{}, "", disk); !ok {
				b.Fatal("the fast path refused the configuration")
			}
			benchconfig.ResetPeakRSS()
			defer benchconfig.ReportPeakRSS(b)
			k := 0
			defer reportCPU(b, cpuTime())
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				k++
				editPackage(b, dir, (k*7919)%n, k)
				b.StartTimer()
				g, ok := fastEvalAt(dir, &eval.Fast{}, "", disk)
				if !ok || len(g.Nodes) != n {
					b.Fatal("the fast path refused the edited configuration")
				}
			}
		})
	}
}

// BenchmarkEvalGraphCUE is the same evaluation with CUE's evaluator
// (lang.Load, Build): what a configuration the fast path refuses costs.
func BenchmarkEvalGraphCUE(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			benchconfig.Write(b, dir, n)
			benchconfig.ResetPeakRSS()
			defer benchconfig.ReportPeakRSS(b)
			defer reportCPU(b, cpuTime())
			b.ResetTimer()
			for b.Loop() {
				cfg, err := lang.NewLoader(dir).Load(dir)
				if err != nil {
					b.Fatal(err)
				}
				g, err := eval.Build(cfg.Value, eval.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if len(g.Nodes) != n {
					b.Fatalf("got %d nodes, want %d", len(g.Nodes), n)
				}
			}
		})
	}
}

// BenchmarkEvalGraphCached is an unchanged configuration evaluated again:
// the graph comes from the evaluation cache, after checking every file it
// depends on.
func BenchmarkEvalGraphCached(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			benchconfig.Write(b, dir, n)
			cfg, err := lang.NewLoader(dir).Load(dir)
			if err != nil {
				b.Fatal(err)
			}
			g, err := eval.Build(cfg.Value, eval.Options{})
			if err != nil {
				b.Fatal(err)
			}
			cache := &eval.Cache{Dir: b.TempDir()}
			req := eval.Request{Build: "bench", Args: []string{dir}}
			if err := cache.Put(req, cfg.Deps, cfg.Dirs, g); err != nil {
				b.Fatal(err)
			}
			benchconfig.ResetPeakRSS()
			defer benchconfig.ReportPeakRSS(b)
			b.ResetTimer()
			for b.Loop() {
				g, ok := cache.Get(req)
				if !ok || len(g.Nodes) != n {
					b.Fatalf("cache miss")
				}
			}
		})
	}
}

// BenchmarkCUEAlone is the baseline docs/design.md ("Measured traps") gives: the same shape with
// a plain CUE definition (no hephc schema), compiled and walked by
// reference, no hashing.
func BenchmarkCUEAlone(b *testing.B) {
	for _, n := range []int{10000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var src strings.Builder
			src.WriteString("#Pkg: {name: string, deps: [...]}\n")
			for i := 0; i < n; i++ {
				fmt.Fprintf(&src, "p%d: #Pkg & {name: \"p%d\", deps: [", i, i)
				for k := 1; k <= 5 && i-7*k >= 0; k++ {
					fmt.Fprintf(&src, "p%d, ", i-7*k)
				}
				src.WriteString("]}\n")
			}
			benchconfig.ResetPeakRSS()
			defer benchconfig.ReportPeakRSS(b)
			b.ResetTimer()
			for b.Loop() {
				v := cuecontext.New().CompileString(src.String())
				if err := v.Err(); err != nil {
					b.Fatal(err)
				}
				it, _ := v.Fields()
				count := 0
				for it.Next() {
					name, _ := it.Value().LookupPath(cue.ParsePath("name")).String()
					if name != "" {
						count++
					}
					dl, _ := it.Value().LookupPath(cue.ParsePath("deps")).List()
					for dl.Next() {
						dl.Value().ReferencePath()
					}
				}
				if count != n {
					b.Fatalf("walked %d, want %d", count, n)
				}
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time used since start per iteration (all
// goroutines): on a shared, loaded machine it says more than wall time.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
	}
}
