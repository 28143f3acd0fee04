package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/store"
)

// TestOpenOddDirectory: a store whose directory's name holds what a
// "file:" URI reads specially ('#', '?', '%') keeps its database in that
// directory, and finds what it registered when opened again.
func TestOpenOddDirectory(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "a#b?c%41d")
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := testPath("p")
	if _, err := st.Install(context.Background(), store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"f": "x"})}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if fi, err := os.Stat(filepath.Join(dir, store.DBFile)); err != nil || fi.Size() == 0 {
		t.Fatalf("the database is not in the store's directory: %v", err)
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != filepath.Base(dir) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("beside the store: %q, want only its directory", names)
	}
	st, err = store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok, err := st.QueryPathInfo(context.Background(), p); err != nil || !ok {
		t.Fatalf("%s after reopening: valid %v, %v", p, ok, err)
	}
}

// TestOpenAddsMissingTables: a database that lacks some of the schema's
// tables (made by an older hephc) gets them when the store is opened.
func TestOpenAddsMissingTables(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db := storetest.OpenDB(t, dir)
	if _, err := db.Exec(`DROP TABLE roots; DROP INDEX builds_drv`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st, err = store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db = storetest.OpenDB(t, dir)
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name IN ('roots', 'builds_drv')`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after reopening, %d of the dropped table and index are back (%v), want both", n, err)
	}
}
