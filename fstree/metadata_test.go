package fstree

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestCheckCanonical finds every entry whose mode is not canonical
// (setuid, setgid, sticky, writable by anyone) and no other; a
// canonicalized tree has none.
func TestCheckCanonical(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	makeTree(t, root,
		dir("."),
		execFile("bin/suid", "#!/bin/sh\n"),
		execFile("bin/ok", "#!/bin/sh\n"),
		file("lib/data", "x"),
		file("lib/writable", "x"),
		dir("open"),
		symlink("link", "lib/data"),
	)
	if err := Canonicalize(root); err != nil {
		t.Fatal(err)
	}
	if ds, err := CheckCanonical(root, AnyOwner); err != nil || len(ds) != 0 {
		t.Fatalf("a canonical tree: %v %v, want nothing", ds, err)
	}
	for path, mode := range map[string]os.FileMode{
		"bin/suid":     0o555 | os.ModeSetuid | os.ModeSetgid,
		"lib/writable": 0o666,
		"open":         0o777 | os.ModeSticky,
		"bin":          0o775,
	} {
		if err := os.Chmod(filepath.Join(root, path), mode); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := CheckCanonical(root, AnyOwner)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.String())
	}
	want := []string{
		"bin: mode 0775 (writable by its group, writable by its owner), want 0555",
		"bin/suid: mode 6555 (setuid, setgid), want 0555",
		"lib/writable: mode 0666 (writable by group and others, writable by its owner), want 0444",
		"open: mode 1777 (sticky, writable by group and others, writable by its owner), want 0555",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The hash does not see modes: the tree still hashes the same.
	if err := Canonicalize(root); err != nil {
		t.Fatal(err)
	}
	if ds, err := CheckCanonical(root, AnyOwner); err != nil || len(ds) != 0 {
		t.Fatalf("canonicalized again: %v %v, want nothing", ds, err)
	}
}

// TestCanonicalizeAsGivesAway: as root, entries another uid owns are
// given to the one asked for, symlinks included (not their targets), and
// CheckCanonical finds them until then.
func TestCanonicalizeAsGivesAway(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may give files away (CI runs the tests as root)")
	}
	dir0 := t.TempDir()
	outside := filepath.Join(dir0, "outside")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir0, "out")
	makeTree(t, root, dir("."), file("f", "x"), dir("d"), symlink("d/l", outside))
	if err := Canonicalize(root); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"f", "d", "d/l"} {
		if err := os.Lchown(filepath.Join(root, p), 4242, 4242); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := CheckCanonical(root, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, d := range ds {
		if d.UID != 4242 || d.WantUID != 0 {
			t.Errorf("%s: got uid %d want %d, want 4242 and 0", d.Rel, d.UID, d.WantUID)
		}
		rels = append(rels, d.Rel)
	}
	if !slices.Equal(rels, []string{"d", "d/l", "f"}) {
		t.Fatalf("got deviations at %v, want d, d/l, f", rels)
	}
	if !strings.Contains(ds[0].String(), "owned by uid 4242, want 0") {
		t.Errorf("got %q", ds[0])
	}
	if err := CanonicalizeAs(root, 0); err != nil {
		t.Fatal(err)
	}
	if ds, err := CheckCanonical(root, 0); err != nil || len(ds) != 0 {
		t.Fatalf("after CanonicalizeAs: %v %v", ds, err)
	}
	fi, err := os.Lstat(outside)
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 || fi.Mode().Perm() != 0o644 {
		t.Errorf("the symlink's target was changed: %v %v", fi.Mode(), err)
	}
}
