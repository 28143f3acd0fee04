package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/internal/benchconfig"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
)

// benchPolicy holds rules of every kind that apply to each package: CUE
// constraints unified with every derivation and with every package by a
// pattern, and rules over the graph.
const benchPolicy = `package bench

import "hephc.dev/heph"

policy: heph.#Policy & {
	licenses: allow: ["MIT", "Apache-2.0"]
	sources: {
		modules: ["golang.org"]
		fetchers: ["builtin:fetch-gomod"]
	}
	versions: minimum: "golang.org/x/crypto": "v0.35.0"
	every: derivation: {
		meta: license!: _
		builder: =~"^builtin:"
		env?: N: =~"^[0-9]+$"
	}
	system: pkgs: [string]: version: =~"^1\\."
}
`

// BenchmarkCheck is BenchmarkEvalGraph (package eval) with a policy:
// load, evaluate, load the policy and check it, for a graph of n
// packages. eval-ms is loading and evaluating, check-ms the policy's own
// share (loading and checking it), and check-% the one over the other,
// measured in the same iterations (this machine is too noisy to compare
// two benchmarks' totals within 20%).
func BenchmarkCheck(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			benchconfig.Write(b, dir, n)
			if err := os.WriteFile(filepath.Join(dir, "policy.cue"), []byte(benchPolicy), 0o644); err != nil {
				b.Fatal(err)
			}
			benchconfig.ResetPeakRSS()
			defer benchconfig.ReportPeakRSS(b)
			var evaluating, checking time.Duration
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				l := lang.NewLoader(dir)
				cfg, err := l.Load(dir)
				if err != nil {
					b.Fatal(err)
				}
				g, err := eval.Build(cfg.Value, eval.Options{})
				if err != nil {
					b.Fatal(err)
				}
				evaluating += time.Since(start)
				start = time.Now()
				set, err := policy.Load(l, cfg, policy.Files(cfg, nil))
				if err != nil {
					b.Fatal(err)
				}
				res, err := policy.Check(cfg.Value, g, set)
				if err != nil || res.Violations != nil {
					b.Fatalf("check: %v %v", err, res.Violations)
				}
				checking += time.Since(start)
				if len(g.Nodes) != n || len(set.Policies) != 1 {
					b.Fatalf("got %d nodes and %d policies, want %d and 1", len(g.Nodes), len(set.Policies), n)
				}
			}
			b.ReportMetric(float64(evaluating.Milliseconds())/float64(b.N), "eval-ms")
			b.ReportMetric(float64(checking.Milliseconds())/float64(b.N), "check-ms")
			b.ReportMetric(100*float64(checking)/float64(evaluating), "check-%")
		})
	}
}
