package eval_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// genConfig makes a configuration from the bytes b, read as a stream of
// choices: packages at the top level or nested, each a derivation literal
// whose fields are mostly what the fast path handles and sometimes what it
// must refuse (interpolation, a bad name, a reference to nothing, a cycle,
// a shadowed reference, a field the schema lacks, a helper, a duplicate).
// It returns the files' contents by name.
func genConfig(b []byte) map[string]string {
	next := func(n int) int {
		if len(b) == 0 || n <= 1 {
			return 0
		}
		c := int(b[0])
		b = b[1:]
		return c % n
	}
	// Half the configurations have no error planted in them; the others
	// have one with each chance below.
	errs := next(2) == 0
	bad := func(n int) int {
		if !errs {
			next(n) // the same stream either way
			return -1
		}
		return next(n)
	}
	n := 1 + next(10)
	where := make([]string, n) // each package's path
	for i := range where {
		switch next(4) {
		case 0:
			where[i] = fmt.Sprintf("p%d", i)
		case 1:
			where[i] = fmt.Sprintf("pkgs.p%d", i)
		case 2:
			where[i] = fmt.Sprintf("grp.sub%d.p%d", i%2, i)
		default:
			where[i] = fmt.Sprintf("pkgs.q%d", i)
		}
	}
	refTo := func(j int) string {
		switch bad(12) {
		case 0:
			return "nothing.here"
		case 1:
			return "name" // shadowed by the derivation's own field
		case 2:
			return "pkgs" // a struct, not a derivation
		}
		return where[j]
	}
	files := map[string]string{}
	nfiles := 1 + next(2)
	for i := range n {
		var d strings.Builder
		name := fmt.Sprintf("%q", fmt.Sprintf("p%d", i))
		switch bad(16) {
		case 0:
			name = `"bad..name"`
		case 1:
			name = fmt.Sprintf(`"p\(%d)"`, i)
		case 2:
			name = `""`
		}
		fmt.Fprintf(&d, "\tname: %s\n", name)
		builder := `"builtin:exec"`
		switch bad(12) {
		case 0:
			builder = `"exec"`
		case 1:
			builder = `"@{d0}/bin/sh"`
		case 2:
			builder = `"@{nope}/bin/sh"`
		}
		if bad(20) != 0 {
			fmt.Fprintf(&d, "\tbuilder: %s\n", builder)
		}
		if next(2) == 0 {
			fmt.Fprintf(&d, "\tversion: \"1.%d\"\n", next(3))
		}
		switch next(8) {
		case 0:
			d.WriteString("\tsystem: \"aarch64-linux\"\n")
		}
		if bad(12) == 0 {
			d.WriteString("\tsystem: \"riscv\"\n")
		}
		switch next(6) {
		case 0:
			d.WriteString("\targs: [\"a\", \"b\\n\\u00e9\"]\n")
		case 1:
			d.WriteString("\targs: []\n")
		}
		if bad(12) == 0 {
			d.WriteString("\targs: [1]\n")
		}
		switch next(6) {
		case 0:
			d.WriteString("\tenv: {A: \"1\", B_2: \"x\"}\n")
		}
		if bad(12) == 0 {
			d.WriteString("\tenv: \"1bad\": \"x\"\n")
		}
		switch next(8) {
		case 0:
			d.WriteString("\tmeta: license: \"MIT\"\n")
		case 1:
			d.WriteString("\tmeta: {channel: \"testing\", provides: [\"x\"], description: \"d\"}\n")
		case 2:
			d.WriteString("\tmeta: {provides: []}\n")
		}
		switch bad(16) {
		case 0:
			d.WriteString("\tmeta: {license: \"MIT OR\", channel: \"testing\"}\n")
		case 1:
			d.WriteString("\tmeta: {channel: \"nightly\"}\n")
		}
		if next(10) == 0 {
			d.WriteString("\toutputHash: \"blake3:" + strings.Repeat("0", 64) + "\"\n")
		}
		switch bad(14) {
		case 0:
			d.WriteString("\tlimits: memory: 1000\n")
		case 1:
			d.WriteString("\tcolour: \"red\"\n")
		case 2:
			d.WriteString("\tattrs: x: 1\n")
		}
		var ins []string
		// dep picks an input: an earlier package, or, when errors are
		// planted, sometimes any package (a cycle, or itself).
		dep := func() string {
			if i > 0 && (!errs || next(6) != 0) {
				return refTo(next(i))
			}
			if errs {
				return refTo(next(n))
			}
			return ""
		}
		for k := range next(4) {
			a, b := dep(), dep()
			if a == "" || b == "" {
				break
			}
			switch next(5) {
			case 0:
				ins = append(ins, fmt.Sprintf("l%d: [%s, %s]", k, a, b))
			case 1:
				ins = append(ins, fmt.Sprintf("s%d: {a: %s, b: %s}", k, a, b))
			default:
				ins = append(ins, fmt.Sprintf("d%d: %s", k, a))
			}
		}
		if len(ins) > 0 || next(3) == 0 {
			fmt.Fprintf(&d, "\tinputs: {%s}\n", strings.Join(ins, ", "))
		}
		def := "heph.#Derivation"
		if bad(25) == 0 {
			def = "heph.#Package" // a helper: refused
		}
		decl := fmt.Sprintf("%s: %s & {\n%s}\n", strings.ReplaceAll(where[i], ".", ": "), def, d.String())
		if bad(30) == 0 {
			decl += decl // the same field twice: CUE unifies
		}
		f := fmt.Sprintf("f%d.cue", i%nfiles)
		if files[f] == "" {
			files[f] = "package gen\n\nimport \"hephc.dev/heph\"\n\n"
		}
		files[f] += decl
	}
	return files
}

// FuzzFastDifferential evaluates generated configurations with CUE and on
// the fast path: wherever the fast path gives a graph it must be CUE's,
// and where CUE finds an error the fast path must refuse. The seeds run as
// a normal test.
func FuzzFastDifferential(f *testing.F) {
	for i := range 40 {
		f.Add(seed(i))
	}
	f.Add([]byte{})
	f.Add([]byte{9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		for name, src := range genConfig(b) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		fastBoth(t, dir)
	})
}

// TestGenConfigReachesBothPaths checks that the fuzz test's seeds make
// configurations the fast path handles and ones it refuses.
func TestGenConfigReachesBothPaths(t *testing.T) {
	handled, refused := 0, 0
	for i := range 40 {
		dir := t.TempDir()
		for name, src := range genConfig(seed(i)) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if fastBoth(t, dir) {
			handled++
		} else {
			refused++
		}
	}
	t.Logf("%d handled, %d refused", handled, refused)
	if os.Getenv("GENCONFIG_DEBUG") != "" {
		for i := range 40 {
			for name, src := range genConfig(seed(i)) {
				t.Logf("seed %d %s:\n%s", i, name, src)
			}
		}
	}
	if handled < 5 || refused < 5 {
		t.Errorf("%d handled, %d refused: the seeds should exercise both", handled, refused)
	}
}

// seed is the fuzz test's i-th seed.
func seed(i int) []byte {
	b := make([]byte, 64)
	for k := range b {
		b[k] = byte((i*131 + k*k*7 + i*k*13) % 251)
	}
	return b
}
