package pins

import (
	"strings"
	"testing"

	"cuelang.org/go/cue/ast"

	"hephc.dev/hephc/cuepatch"
	"hephc.dev/hephc/gomod"
)

func TestNewKeyNamesEntriesAsTheTableDoes(t *testing.T) {
	c := &Config{table: &table{entries: map[string]*Module{
		"x_crypto": {Module: gomod.Module{Path: "golang.org/x/crypto", Version: "v0.45.0"}},
		"xz":       {Module: gomod.Module{Path: "github.com/ulikunitz/xz", Version: "v0.5.15"}},
	}}}
	taken := func(k string) (gomod.Module, bool) {
		m, ok := c.table.entries[k]
		if !ok {
			return gomod.Module{}, false
		}
		return m.Module, true
	}
	for _, tc := range []struct {
		path, version string
		others        bool
		want          string
	}{
		{"golang.org/x/sys", "v0.41.0", false, "x_sys"},
		{"golang.org/x/crypto", "v0.55.0", true, "x_crypto_v0_55_0"},
		{"github.com/therootcompany/xz", "v1.0.1", false, "therootcompany_xz"},
		{"github.com/pierrec/lz4/v4", "v4.1.22", false, "lz4"},
		{"gopkg.in/yaml.v3", "v3.0.1", false, "yaml_v3"},
		{"github.com/mattn/go-isatty", "v0.0.20", false, "go_isatty"},
		{"github.com/google/go-tpm", "v0.9.2-0.20240919181259-d96ccf715685", true, "go_tpm_20240919"},
		{"example.com/9lives", "v1.0.0", false, "m_9lives"},
		{"example.com/if", "v1.0.0", false, "if_mod"},
	} {
		got := c.newKey(gomod.Module{Path: tc.path, Version: tc.version}, tc.others, taken)
		if got != tc.want {
			t.Errorf("newKey(%s@%s) = %s, want %s", tc.path, tc.version, got, tc.want)
		}
	}
}

func TestFormatListKeepsTheListsLayout(t *testing.T) {
	src := "package x\n\na: {\n\tdeps: [x.a, x.b]\n\tmore: [\n\t\tx.c,\n\t]\n}\n"
	f, err := cuepatch.Parse("x.cue", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	list := func(sub string) *ast.ListLit {
		n := f.NodeAt(strings.Index(src, sub), func(n ast.Node) bool { _, ok := n.(*ast.ListLit); return ok })
		return n.(*ast.ListLit)
	}
	if got := formatList(f, list("[x.a"), []string{"x.a", "x.z"}); got != "[x.a, x.z]" {
		t.Errorf("a one-line list that still fits: got %q", got)
	}
	long := []string{"modules.aaaaaaaaaaaaaaaa", "modules.bbbbbbbbbbbbbbbb", "modules.cccccccccccccccc", "modules.dddddddddddddddd"}
	// Two tabs count 8 columns: three elements would need 85.
	want := "[\n\t\tmodules.aaaaaaaaaaaaaaaa, modules.bbbbbbbbbbbbbbbb,\n\t\tmodules.cccccccccccccccc, modules.dddddddddddddddd,\n\t]"
	if got := formatList(f, list("[x.a"), long); got != want {
		t.Errorf("a one-line list that no longer fits:\ngot  %q\nwant %q", got, want)
	}
	if got := formatList(f, list("[\n\t\tx.c"), []string{"x.c", "x.d"}); got != "[\n\t\tx.c, x.d,\n\t]" {
		t.Errorf("a list on lines of its own: got %q", got)
	}
	if got := formatList(f, list("[\n\t\tx.c"), nil); got != "[]" {
		t.Errorf("an empty list: got %q", got)
	}
}

func TestDepsDigestIgnoresOrder(t *testing.T) {
	a := []gomod.Module{{Path: "a", Version: "v1.0.0", Sum: "h1:a"}, {Path: "b", Version: "v1.0.0", Sum: "h1:b"}}
	b := []gomod.Module{a[1], a[0]}
	if DepsDigest(a, "") != DepsDigest(b, "") {
		t.Error("the digest depends on the order of the deps")
	}
	if DepsDigest(a, "") == DepsDigest(a, "blake3:x") {
		t.Error("the digest ignores the module graph's pin")
	}
	c := []gomod.Module{a[0], {Path: "b", Version: "v1.0.0", Sum: "h1:other"}}
	if DepsDigest(a, "") == DepsDigest(c, "") {
		t.Error("the digest ignores a dep's sum")
	}
}

func TestCapturedByInputs(t *testing.T) {
	for ref, want := range map[string]bool{
		"src":              true,
		"go.x":             true,
		`deps["a"]`:        true,
		"modfiles[0].x":    true,
		"modules.src":      false,
		"gosrc":            false,
		"toolchain":        false,
		`modules["go"].x`:  false,
		"modules.x_crypto": false,
	} {
		if got := capturedByInputs(ref); got != want {
			t.Errorf("capturedByInputs(%q) = %v, want %v", ref, got, want)
		}
	}
}
