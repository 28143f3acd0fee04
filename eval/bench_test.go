package eval_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
)

// writeBenchConfig writes n packages in the real schema to dir, 1,000 a
// file; package i depends on i-7, i-14, … (up to 5 earlier packages), the
// shape DESIGN.md measured CUE alone on.
func writeBenchConfig(tb testing.TB, dir string, n int) {
	tb.Helper()
	const perFile = 1000
	for f := 0; f*perFile < n; f++ {
		var b strings.Builder
		b.WriteString("package bench\n\nimport \"hephc.dev/heph\"\n\n")
		for i := f * perFile; i < n && i < (f+1)*perFile; i++ {
			fmt.Fprintf(&b, "pkgs: p%d: heph.#Derivation & {\n\tname: \"p%d\"\n\tversion: \"1.%d\"\n\tbuilder: \"builtin:exec\"\n\targs: [\"build\", \"%d\"]\n\tenv: N: \"%d\"\n\tinputs: {", i, i, i, i, i)
			for k := 1; k <= 5 && i-7*k >= 0; k++ {
				fmt.Fprintf(&b, "d%d: pkgs.p%d, ", k, i-7*k)
			}
			b.WriteString("}\n}\n")
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("pkgs%03d.cue", f)), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// resetPeakRSS makes the kernel forget the process's peak resident set
// size, so peakRSS measures what follows.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // Linux; harmless elsewhere
}

// reportPeakRSS reports the process's peak resident set size since
// resetPeakRSS, in MB (VmHWM of /proc/self/status).
func reportPeakRSS(b *testing.B) {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err == nil {
				b.ReportMetric(float64(kb)/1024, "peak-MB")
			}
		}
	}
}

func BenchmarkEvalGraph(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			writeBenchConfig(b, dir, n)
			resetPeakRSS()
			defer reportPeakRSS(b)
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
			writeBenchConfig(b, dir, n)
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
			resetPeakRSS()
			defer reportPeakRSS(b)
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

// BenchmarkCUEAlone is the baseline DESIGN.md measured: the same shape with
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
			resetPeakRSS()
			defer reportPeakRSS(b)
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
