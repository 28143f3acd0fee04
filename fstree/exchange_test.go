package fstree

import (
	"os"
	"path/filepath"
	"testing"
)

func TestExchange(t *testing.T) {
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "sub", "b")
	makeTree(t, a, file("f", "new"))
	makeTree(t, b, file("f", "old"), dir("d"))
	// Read-only, as store paths are.
	for _, p := range []string{a, b} {
		if err := Canonicalize(p); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { RemoveTree(a); RemoveTree(b) })
	if err := Exchange(a, b); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(b, "f")); err != nil || string(got) != "new" {
		t.Errorf("b/f: %q (%v), want the new content", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(a, "f")); err != nil || string(got) != "old" {
		t.Errorf("a/f: %q (%v), want the old content, left where the new was", got, err)
	}
	// Nothing at the destination: a move.
	c := filepath.Join(tmp, "c")
	if err := Exchange(a, c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(a); !os.IsNotExist(err) {
		t.Errorf("after a move, the source is still there (%v)", err)
	}
	if got, err := os.ReadFile(filepath.Join(c, "f")); err != nil || string(got) != "old" {
		t.Errorf("c/f: %q (%v)", got, err)
	}
	RemoveTree(c)
}
