package eval_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

func BenchmarkEvalGraph(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			writeBenchConfig(b, dir, n)
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
