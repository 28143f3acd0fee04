package cuepatch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cuelang.org/go/cue/ast"
)

const src = `package x

// The pin, with a comment that stays.
a: {
	version:  "v1.0.0"   // aligned oddly on purpose
	sum:      "h1:old="
}
b: [x, y] // a list
`

func offsetOf(t *testing.T, s, sub string) int {
	t.Helper()
	i := strings.Index(s, sub)
	if i < 0 {
		t.Fatalf("%q not in source", sub)
	}
	return i
}

func TestReplaceKeepsEveryOtherByte(t *testing.T) {
	f, err := Parse("x.cue", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ReplaceString(offsetOf(t, src, `"v1.0.0"`), "v1.0.0", "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	if err := f.ReplaceString(offsetOf(t, src, `"h1:old="`), "h1:old=", "h1:new="); err != nil {
		t.Fatal(err)
	}
	list := f.NodeAt(offsetOf(t, src, "[x, y]"), func(n ast.Node) bool { _, ok := n.(*ast.ListLit); return ok })
	if list == nil {
		t.Fatal("no list found at its offset")
	}
	if err := f.Replace(list, "[y, z]"); err != nil {
		t.Fatal(err)
	}
	got, err := f.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer(`"v1.0.0"`, `"v1.2.3"`, `"h1:old="`, `"h1:new="`, "[x, y]", "[y, z]").Replace(src)
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if string(f.Source()) != src {
		t.Error("Bytes changed the source it was planned on")
	}
}

func TestReplaceStringChecksTheOldValue(t *testing.T) {
	f, err := Parse("x.cue", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	err = f.ReplaceString(offsetOf(t, src, `"v1.0.0"`), "v9", "v1.2.3")
	if err == nil || !strings.Contains(err.Error(), `x.cue:5:12: want "v9" here, found "v1.0.0"`) {
		t.Errorf("got %v, want the position and both values", err)
	}
	if err := f.ReplaceString(offsetOf(t, src, "version"), "x", "y"); err == nil {
		t.Error("replacing a label as a string literal: no error")
	}
}

func TestOverlappingEditsAreRefused(t *testing.T) {
	f, err := Parse("x.cue", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	at := offsetOf(t, src, `"v1.0.0"`)
	if err := f.Delete(at-3, at+3); err != nil {
		t.Fatal(err)
	}
	if err := f.ReplaceString(at, "v1.0.0", "v2"); err == nil {
		t.Error("an edit overlapping another: no error")
	}
}

func TestInsertionGoesBeforeAReplacementThatStartsThere(t *testing.T) {
	f, err := Parse("x.cue", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	at := offsetOf(t, src, "b: [x, y]")
	if err := f.Delete(at, at+len("b: [x, y] // a list\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Insert(at, "c: 1\n"); err != nil {
		t.Fatal(err)
	}
	got, err := f.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(src, "b: [x, y] // a list\n", "c: 1\n", 1); string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestAnEditThatBreaksTheSyntaxIsRefused(t *testing.T) {
	f, err := Parse("x.cue", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Insert(offsetOf(t, src, "a: {"), "{"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Bytes(); err == nil || !strings.Contains(err.Error(), "editing x.cue made it invalid") {
		t.Errorf("got %v, want the edit refused", err)
	}
}

func TestWriteFileIsAtomicAndKeepsTheMode(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "system.cue")
	if err := os.WriteFile(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(name, []byte("new")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(name)
	if err != nil || string(b) != "new" {
		t.Fatalf("got %q, %v; want new", b, err)
	}
	fi, err := os.Stat(name)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("%d files in the directory, want 1 (no temporary file left)", len(ents))
	}
	if err := WriteFile(filepath.Join(dir, "missing", "x.cue"), []byte("x")); err == nil {
		t.Error("writing into a missing directory: no error")
	}
}
