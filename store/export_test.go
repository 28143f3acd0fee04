package store_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
)

// TestExportReproducible adds one tree to two stores, made at different
// times with different modes, and exports it from both: the same bytes,
// which extract to the same content hash.
func TestExportReproducible(t *testing.T) {
	ctx := context.Background()
	var exports [][]byte
	var p store.Path
	for i := range 2 {
		src := filepath.Join(t.TempDir(), "src")
		os.MkdirAll(filepath.Join(src, "bin"), 0o755)
		os.WriteFile(filepath.Join(src, "bin", "tool"), []byte("#!/bin/sh\n"), 0o700+groupBit(i))
		os.WriteFile(filepath.Join(src, "readme"), []byte("hello\n"), 0o600+groupBit(i))
		os.Symlink("bin/tool", filepath.Join(src, "run"))
		os.Chtimes(filepath.Join(src, "readme"), time.Unix(int64(i)*1e9, 0), time.Unix(int64(i)*1e9, 0))
		st, err := store.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if p, err = st.Add(ctx, src, "tree"); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := st.Export(ctx, p, &b); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, b.Bytes())

		info, _, err := st.QueryPathInfo(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out")
		if err := fstree.ExtractTar(bytes.NewReader(b.Bytes()), out, p.Base(), info.Size); err != nil {
			t.Fatal(err)
		}
		if tree, err := fstree.HashTree(out, fstree.HashOptions{}); err != nil || tree.Hash != info.ContentHash {
			t.Errorf("the export extracts to %v (%v), want the content hash %s", tree.Hash, err, info.ContentHash)
		}
		missing := store.Path{Hash: store.HashDerivation([]byte("nothing")), Name: "gone"}
		if err := st.Export(ctx, missing, &b); err == nil {
			t.Errorf("exporting a path that is not valid: no error")
		}
	}
	if !bytes.Equal(exports[0], exports[1]) {
		t.Errorf("one content gave two exports")
	}
}

// groupBit is a permission bit the tree hash ignores, for the i-th copy.
func groupBit(i int) os.FileMode { return os.FileMode(i) * 0o040 }
