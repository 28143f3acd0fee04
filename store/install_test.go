package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/store"
)

// stage writes files into a new directory made with TempDir and returns
// the tree's path there.
func stage(t *testing.T, st *store.Store, files map[string]string) string {
	t.Helper()
	tmp, err := st.TempDir("add-test-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	for name, data := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(out, name)), 0o755)
		if err := os.WriteFile(filepath.Join(out, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestInstall(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dep := store.Path{Hash: store.HashDerivation([]byte("dep")), Name: "dep"}
	other := store.Path{Hash: store.HashDerivation([]byte("other")), Name: "other"}
	p := store.Path{Hash: store.HashDerivation([]byte("p")), Name: "p"}

	// A reference must be valid: installing p before dep fails and
	// leaves nothing.
	src := stage(t, st, map[string]string{"ref": dep.String()})
	if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: src, References: []store.Path{dep, other}}); err == nil {
		t.Fatalf("installed a path whose reference is not valid")
	}
	if _, err := os.Lstat(src); !os.IsNotExist(err) {
		t.Errorf("the source is still there after a failed install (%v)", err)
	}
	if _, err := os.Lstat(st.Physical(p)); !os.IsNotExist(err) {
		t.Errorf("a failed install left %s in the store (%v)", p, err)
	}

	if _, err := st.Install(ctx, store.InstallRequest{Path: dep, Source: stage(t, st, map[string]string{"x": "1"})}); err != nil {
		t.Fatal(err)
	}
	// Check sees the content and can refuse it.
	refused := errors.New("not this")
	_, err = st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"ref": dep.String()}), References: []store.Path{dep},
		Check: func(phys string, info *store.PathInfo) error { return refused }})
	if !errors.Is(err, refused) {
		t.Fatalf("got %v, want Check's error", err)
	}
	// A leftover where p goes (a killed install) is dropped.
	os.MkdirAll(filepath.Join(st.Physical(p), "stale"), 0o555)
	info, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"ref": dep.String()}), References: []store.Path{dep, other}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.References, []store.Path{dep}) {
		t.Errorf("references %v, want [%s]: the candidates it mentions", info.References, dep)
	}
	if _, err := os.Lstat(filepath.Join(st.Physical(p), "stale")); !os.IsNotExist(err) {
		t.Errorf("the leftover's content survived the install")
	}
	if fi, err := os.Stat(filepath.Join(st.Physical(p), "ref")); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("installed content is not canonical: %v (%v)", fi.Mode(), err)
	}
	// Valid already: the new content is dropped, the old kept.
	again := stage(t, st, map[string]string{"ref": "something else"})
	if got, err := st.Install(ctx, store.InstallRequest{Path: p, Source: again}); err != nil || got.ContentHash != info.ContentHash {
		t.Errorf("installing a valid path again: %v, %v; want what the store has", got, err)
	}
	if _, err := os.Lstat(again); !os.IsNotExist(err) {
		t.Errorf("the dropped source is still there (%v)", err)
	}
	// Another path's lock is refused.
	lock, err := st.LockPath(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, nil), Lock: lock})
	lock.Unlock()
	if err == nil || !strings.Contains(err.Error(), "lock") {
		t.Errorf("installing under another path's lock: %v", err)
	}

	// A repair takes the same content only.
	_, err = st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"ref": "changed"}), Repair: true})
	if err == nil || !strings.Contains(err.Error(), info.ContentHash.String()) {
		t.Fatalf("repairing with other content: %v, want an error naming the recorded hash", err)
	}
	if b, _ := os.ReadFile(filepath.Join(st.Physical(p), "ref")); string(b) != dep.String() {
		t.Fatalf("a refused repair changed the content to %q", b)
	}
	os.Chmod(st.Physical(p), 0o755)
	os.Remove(filepath.Join(st.Physical(p), "ref"))
	if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"ref": dep.String()}), Repair: true}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(st.Physical(p), "ref")); err != nil || string(b) != dep.String() {
		t.Errorf("after the repair: %q (%v)", b, err)
	}
	// Every source is gone, installed or not.
	entries, _ := os.ReadDir(filepath.Join(st.Dir, "tmp"))
	for _, e := range entries {
		if left, _ := os.ReadDir(filepath.Join(st.Dir, "tmp", e.Name())); len(left) != 0 {
			t.Errorf("tmp/%s holds %s after Install", e.Name(), left[0].Name())
		}
	}
}
