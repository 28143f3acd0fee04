package fstree

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCopyTree(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	makeTree(t, src, sampleTree...)
	makeTree(t, src, entry{"odd-exec", 0o710, "group may run it"}, symlink("dangling", "/nowhere"))
	dst := filepath.Join(tmp, "dst")
	files, bytes, err := CopyTree(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	// bin/hi, hello, link, odd-exec, dangling; symlinks count no bytes.
	if files != 5 || bytes != int64(len("#!/bin/sh\necho hi\n")+len("hello\n")+len("group may run it")) {
		t.Errorf("copied %d files, %d bytes", files, bytes)
	}
	if a, b := hashTree(t, src, HashOptions{}).Hash, hashTree(t, dst, HashOptions{}).Hash; a != b {
		t.Errorf("the copy hashes to %s, the original to %s", b, a)
	}
	for p, want := range map[string]os.FileMode{"hello": 0o644, "bin/hi": 0o755, "odd-exec": 0o755, "bin": os.ModeDir | 0o755} {
		if fi, err := os.Lstat(filepath.Join(dst, p)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dst, "dangling")); err != nil || target != "/nowhere" {
		t.Errorf("a dangling symlink was copied as %q (%v)", target, err)
	}

	// One file, and one symlink, not followed.
	one := filepath.Join(tmp, "one")
	if _, _, err := CopyTree(filepath.Join(src, "hello"), one); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(one); err != nil || string(b) != "hello\n" {
		t.Errorf("copying one file gave %q (%v)", b, err)
	}
	link := filepath.Join(tmp, "link")
	if _, _, err := CopyTree(filepath.Join(src, "link"), link); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Errorf("copying a symlink gave %v (%v), want a symlink", fi.Mode(), err)
	}

	// Over something that exists: refused.
	if _, _, err := CopyTree(src, dst); err == nil {
		t.Errorf("copying onto an existing tree: no error")
	}
}

func TestCopyTreeRefusesSpecialFiles(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, file("a", "x"), dir("sub"))
	if err := syscall.Mkfifo(filepath.Join(src, "sub", "fifo"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, _, err := CopyTree(src, filepath.Join(t.TempDir(), "dst"))
	if err == nil || !strings.Contains(err.Error(), "sub/fifo") {
		t.Errorf("copying a fifo: error %v, want one naming sub/fifo", err)
	}
}
