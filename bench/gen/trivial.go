package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"hephc.dev/hephc/fstree"
)

// writeTrivial writes the graph BenchmarkRealizeTrivial builds, for the
// CLI of both: n derivations with no dependencies on each other, each
// running the static test builder (internal/testbuilder) with one step,
// single=TEXT, that writes $out. salt goes into every TEXT so that each
// round builds afresh in a store that keeps the earlier rounds (Nix's).
// The builder is a #LocalFile beside the hephc configuration and a path
// literal in the Nix expression: an input of every derivation, in the
// sandbox, on both sides.
func writeTrivial(n int, tool, salt, hephcDir, nixFile string) error {
	b, err := os.ReadFile(tool)
	if err != nil {
		return err
	}
	if hephcDir != "" {
		if err := os.MkdirAll(hephcDir, 0o755); err != nil {
			return err
		}
		dst := filepath.Join(hephcDir, "testbuilder")
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			return err
		}
		info, err := fstree.HashTree(dst, fstree.HashOptions{})
		if err != nil {
			return err
		}
		var c strings.Builder
		fmt.Fprintf(&c, "package bench\n\nimport \"hephc.dev/heph\"\n\ntestbuilder: heph.#LocalFile & {file: \"testbuilder\", hash: %q}\n\n", info.Hash)
		for i := 0; i < n; i++ {
			fmt.Fprintf(&c, "t%d: heph.#Derivation & {name: \"t%d\", builder: \"@{tool}\", inputs: tool: testbuilder, args: [\"single=%d %s\"]}\n", i, i, i, salt)
		}
		if err := os.WriteFile(filepath.Join(hephcDir, "trivial.cue"), []byte(c.String()), 0o644); err != nil {
			return err
		}
	}
	if nixFile != "" {
		dst := filepath.Join(filepath.Dir(nixFile), "testbuilder")
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			return err
		}
		var c strings.Builder
		c.WriteString("let\n  mk = i: derivation {\n    name = \"t${toString i}\";\n    system = \"x86_64-linux\";\n    builder = ./testbuilder;\n")
		fmt.Fprintf(&c, "    args = [ \"single=${toString i} %s\" ];\n  };\nin builtins.genList mk %d\n", salt, n)
		if err := os.WriteFile(nixFile, []byte(c.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
