package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hephc.dev/hephc/gendiff"
)

// TestDiffClosureIsGenerations realizes two generations and checks that
// diff's closure sizes are the ones generations shows (and path-info
// --closure sums): the runtime closure, not every output the generation
// was built from (the builder here is megabytes no output refers to).
func TestDiffClosureIsGenerations(t *testing.T) {
	dir := t.TempDir()
	if err := writeTool(dir); err != nil {
		t.Fatal(err)
	}
	hephc := func(args ...string) []byte {
		t.Helper()
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: func(k string) string {
			if k == "HEPHC_CACHE" {
				return filepath.Join(dir, "cache")
			}
			return ""
		}}
		if code := run(e, append([]string{"--store", filepath.Join(dir, "store")}, args...)); code != 0 {
			t.Fatalf("hephc %v: exit %d\n%s", args, code, stderr.String())
		}
		return stdout.Bytes()
	}
	for _, greeting := range []string{"hello", "hello, world"} {
		cue := "package system\n\nimport \"hephc.dev/heph\"\n\npkgs: hello: heph.#Derivation & {\n\tname: \"hello\"\n\tbuilder: \"@{tool}\"\n\targs: [\"file=greeting=" + greeting + "\"]\n\tinputs: \"tool\": tool\n}\n"
		if err := os.WriteFile(filepath.Join(dir, "system.cue"), []byte(cue), 0o644); err != nil {
			t.Fatal(err)
		}
		hephc("realize", "--no-link", "--profile", "dev", "-A", "pkgs", ".")
	}
	var gens []struct {
		ClosureSize int64 `json:"closureSize"`
	}
	if err := json.Unmarshal(hephc("generations", "--profile", "dev", "--json"), &gens); err != nil || len(gens) != 2 {
		t.Fatalf("generations --json: %v, %d generations", err, len(gens))
	}
	var diff struct {
		Diff struct {
			ClosureBefore, ClosureAfter, BuildClosureBefore, BuildClosureAfter int64
		}
	}
	if err := json.Unmarshal(hephc("diff", "--profile", "dev", "--json"), &diff); err != nil {
		t.Fatal(err)
	}
	d := diff.Diff
	if d.ClosureBefore != gens[0].ClosureSize || d.ClosureAfter != gens[1].ClosureSize {
		t.Errorf("diff's closure is %d → %d bytes; generations says %d and %d", d.ClosureBefore, d.ClosureAfter, gens[0].ClosureSize, gens[1].ClosureSize)
	}
	if d.BuildClosureAfter <= d.ClosureAfter+1<<20 {
		t.Errorf("with build inputs %d bytes, want the closure (%d) and the megabytes of the builder", d.BuildClosureAfter, d.ClosureAfter)
	}
}

// TestDiffPrintsFewCauses: a package changed for many edits lists the
// first few and counts the rest (--json has them all).
func TestDiffPrintsFewCauses(t *testing.T) {
	c := &gendiff.PackageChange{Key: "images.workstation", OldSize: 10, NewSize: 12}
	for i := range 7 {
		c.Why = append(c.Why, &gendiff.Reason{Attr: fmt.Sprintf("modules.m%d", i), Field: "version", Old: "v1.0.0", New: "v1.1.0"})
	}
	d := &gendiff.Diff{Changed: []*gendiff.PackageChange{c}, ClosureBefore: 100, ClosureAfter: 102, BuildBefore: gendiff.Unknown, BuildAfter: 5000}
	var stdout bytes.Buffer
	printDiff(&env{stdout: &stdout, getenv: func(string) string { return "" }}, "generation 1", "generation 2", d)
	out := stdout.String()
	if n := strings.Count(out, "because"); n != maxBecause {
		t.Errorf("%d because lines, want %d:\n%s", n, maxBecause, out)
	}
	for _, want := range []string{
		"\nclosure: 100 B → 102 B (+2 B)\n",
		"\nwith build inputs: (not realized) → 4.9 KiB\n",
		"\n    … and 3 more causes (--json lists them)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
