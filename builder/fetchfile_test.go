package builder_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// TestFetchFileCopiesADirectory pins a directory tree of the
// configuration (a Go module, say): files, executable bits, subdirectories
// and symbolic links arrive as they are.
func TestFetchFileCopiesADirectory(t *testing.T) {
	conf := t.TempDir()
	dir := filepath.Join(conf, "system", "tool")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/tool\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("sub/run.sh", filepath.Join(dir, "run"))
	tree, err := fstree.HashTree(dir, fstree.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := &store.Derivation{Name: "system-tool", Builder: "builtin:fetch-file", Attrs: map[string]any{"file": "system/tool"}, OutputHash: tree.Hash.String()}
	st, p, err := realizeOne(t, d, realize.Options{SourceDir: conf})
	if err != nil {
		t.Fatal(err)
	}
	out := st.Physical(p)
	if b, _ := os.ReadFile(filepath.Join(out, "go.mod")); string(b) != "module example.com/tool\n" {
		t.Errorf("go.mod: got %q", b)
	}
	if fi, err := os.Stat(filepath.Join(out, "sub", "run.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("sub/run.sh: got %v (%v), want an executable file", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(out, "run")); err != nil || l != "sub/run.sh" {
		t.Errorf("run: got link %q (%v), want sub/run.sh", l, err)
	}
}

func TestFetchFileRefusesAFifo(t *testing.T) {
	conf := t.TempDir()
	os.MkdirAll(filepath.Join(conf, "d"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(conf, "d", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &store.Derivation{Name: "d", Builder: "builtin:fetch-file", Attrs: map[string]any{"file": "d"}, OutputHash: "blake3:" + strings.Repeat("0", 64)}
	_, _, err := realizeOne(t, d, realize.Options{SourceDir: conf})
	if err == nil || !strings.Contains(err.Error()+logTail(err), "pipe is not a regular file, directory or symbolic link") {
		t.Errorf("got %v\n%s\nwant the fifo named", err, logTail(err))
	}
}

func logTail(err error) string {
	var be *realize.BuildError
	if errors.As(err, &be) {
		return strings.Join(be.LogTail, "\n")
	}
	return ""
}
