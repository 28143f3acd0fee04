// Command gen writes the graph shapes bench/compare.sh measures, for
// hephc and for Nix: n packages, package i depending on i-7, i-14, … (up
// to 5 earlier ones), each with a version, args, an env variable and a
// license. The hephc configuration is internal/benchconfig's, the one
// BenchmarkEvalGraph evaluates; the Nix expression is the same graph of
// plain derivations (derivation { … }), one attribute a package.
//
//	go run ./bench/gen -n 10000 -hephc DIR -nix FILE
//
// With -trivial TESTBUILDER it writes instead the graph
// BenchmarkRealizeTrivial builds (writeTrivial): n independent sandboxed
// derivations running that static builder.
//
//	go run ./bench/gen -n 200 -trivial testbuilder -salt R1 -hephc DIR -nix FILE
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"testing"

	"hephc.dev/hephc/internal/benchconfig"
)

// tb lets benchconfig.Write, written for tests, run here.
type tb struct{ testing.TB }

func (tb) Helper()           {}
func (tb) Fatal(args ...any) { log.Fatal(args...) }

func main() {
	n := flag.Int("n", 10000, "packages")
	hephcDir := flag.String("hephc", "", "directory to write the hephc configuration to")
	nixFile := flag.String("nix", "", "file to write the Nix expression to")
	trivial := flag.String("trivial", "", "write the trivial realize graph instead, with this static builder")
	salt := flag.String("salt", "", "with -trivial: text in every derivation, so that each round builds afresh")
	flag.Parse()
	if *trivial != "" {
		if err := writeTrivial(*n, *trivial, *salt, *hephcDir, *nixFile); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *hephcDir != "" {
		if err := os.MkdirAll(*hephcDir, 0o755); err != nil {
			log.Fatal(err)
		}
		benchconfig.Write(tb{}, *hephcDir, *n)
	}
	if *nixFile != "" {
		if err := os.WriteFile(*nixFile, []byte(nixExpr(*n)), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// nixExpr is the graph as one Nix attribute set.
func nixExpr(n int) string {
	var b strings.Builder
	b.WriteString("let\n  mk = i: deps: derivation {\n    name = \"p${toString i}\";\n    version = \"1.${toString i}\";\n" +
		"    system = \"x86_64-linux\";\n    builder = \"/bin/sh\";\n    args = [ \"-c\" \"echo ${toString i} > $out\" ];\n" +
		"    N = toString i;\n    license = \"MIT\";\n    inherit deps;\n  };\nin rec {\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  p%d = mk %d [", i, i)
		for k := 1; k <= 5 && i-7*k >= 0; k++ {
			fmt.Fprintf(&b, " p%d", i-7*k)
		}
		b.WriteString(" ];\n")
	}
	b.WriteString("}\n")
	return b.String()
}
