package builder_test

import (
	"os"
	"path/filepath"
	"testing"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// TestFetchFileFilters: attrs.include and attrs.exclude choose part of a
// directory; the pin is the hash of that part.
func TestFetchFileFilters(t *testing.T) {
	conf := t.TempDir()
	dir := filepath.Join(conf, "tool")
	for name, content := range map[string]string{
		"go.mod": "module example.com/tool\n", "main.go": "package main\n",
		"main_test.go": "package main\n", "docs/x.md": "doc\n", "sub/a.go": "package sub\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	want := filepath.Join(t.TempDir(), "want")
	for _, name := range []string{"go.mod", "main.go", "sub/a.go"} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		os.MkdirAll(filepath.Dir(filepath.Join(want, name)), 0o755)
		os.WriteFile(filepath.Join(want, name), b, 0o644)
	}
	tree, err := fstree.HashTree(want, fstree.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := &store.Derivation{Name: "tool", Builder: "builtin:fetch-file", OutputHash: tree.Hash.String(),
		Attrs: map[string]any{"file": "tool", "include": []any{"**/*.go", "go.mod"}, "exclude": []any{"**/*_test.go"}}}
	st, p, err := realizeOne(t, d, realize.Options{SourceDir: conf})
	if err != nil {
		t.Fatalf("%v\n%s", err, logTail(err))
	}
	if _, err := os.Stat(filepath.Join(st.Physical(p), "main_test.go")); !os.IsNotExist(err) {
		t.Errorf("main_test.go was copied: %v", err)
	}
}
