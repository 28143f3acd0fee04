package profile_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/store"
)

// root adds a file holding data to st.
func root(t *testing.T, st *store.Store, name, data string) store.Path {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := st.Add(context.Background(), f, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGenerations(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Unix(1_800_000_000, 0)
	st.Now = func() time.Time { return now }
	a, b := root(t, st, "a", "1"), root(t, st, "b", "2")

	g1, recorded, err := profile.Record(ctx, st, "system", map[string]store.Path{"pkgs.a": a}, "blake3:1", "system.cue")
	if err != nil || !recorded || g1.Number != 1 {
		t.Fatalf("first generation: %+v, %v, %v", g1, recorded, err)
	}
	if again, recorded, err := profile.Record(ctx, st, "system", map[string]store.Path{"pkgs.a": a}, "blake3:1", "system.cue"); err != nil || recorded || again.Number != 1 {
		t.Fatalf("the same roots again: %+v, recorded %v, %v; want generation 1, not recorded", again, recorded, err)
	}
	now = now.Add(48 * time.Hour)
	g2, _, err := profile.Record(ctx, st, "system", map[string]store.Path{"pkgs.a": a, "pkgs.b": b}, "blake3:2", "system.cue")
	if err != nil || g2.Number != 2 {
		t.Fatalf("second generation: %+v, %v", g2, err)
	}
	// The generation object refers to its roots: GC keeps them.
	info, _, err := st.QueryPathInfo(ctx, g2.Toplevel)
	if err != nil || !slices.Equal(info.References, []store.Path{a, b}) && !slices.Equal(info.References, []store.Path{b, a}) {
		t.Errorf("generation 2's object refers to %v (%v), want a and b", info.References, err)
	}
	if size, _ := st.ClosureSize(ctx, g2.Toplevel); g2.ClosureSize != size || size < 2 {
		t.Errorf("closure size %d, the store says %d", g2.ClosureSize, size)
	}

	gens, err := profile.List(ctx, st, "system")
	if err != nil || len(gens) != 2 || gens[0].Current || !gens[1].Current || len(gens[1].Roots) != 2 || gens[1].Roots["pkgs.b"] != b {
		t.Fatalf("list: %+v (%v)", gens, err)
	}
	if link, err := os.Readlink(filepath.Join(st.Dir, "profiles", "system")); err != nil || link != st.Physical(g2.Toplevel) {
		t.Errorf("profiles/system points at %q (%v), want generation 2's object", link, err)
	}

	// Expired: older than the newest one, or more than a day old; never
	// the current one.
	for _, tc := range []struct {
		keep  int
		older time.Duration
		want  []store.GenerationID
	}{
		{1, 0, []store.GenerationID{{Profile: "system", Number: 1}}},
		{2, 0, nil},
		{0, 24 * time.Hour, []store.GenerationID{{Profile: "system", Number: 1}}},
		{0, 72 * time.Hour, nil},
		{0, 0, nil},
	} {
		if got, err := profile.Expired(ctx, st, tc.keep, tc.older); err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Expired(%d, %v) = %v (%v), want %v", tc.keep, tc.older, got, err, tc.want)
		}
	}

	// Rolled back: generation 1 is current, and never expires.
	if g, err := profile.SetCurrent(ctx, st, "system", 1); err != nil || !g.Current || g.Number != 1 {
		t.Fatalf("rollback: %+v, %v", g, err)
	}
	if got, _ := profile.Expired(ctx, st, 1, 0); len(got) != 0 {
		t.Errorf("Expired after the rollback: %v, want none (1 is current, 2 the newest)", got)
	}
	if cur, err := profile.Get(ctx, st, "system", 0); err != nil || cur.Number != 1 {
		t.Errorf("current generation: %+v, %v", cur, err)
	}
	if _, err := profile.Get(ctx, st, "system", 7); err == nil {
		t.Errorf("generation 7: no error")
	}
	if _, _, err := profile.Record(ctx, st, "../x", nil, "", ""); err == nil {
		t.Errorf("a profile named ../x: no error")
	}
}

// A generation records the configuration's directory and files; the same
// roots realized from another directory are another generation; a
// generation recorded without them (as before they were kept) still
// reads, with none.
func TestGenerationOrigin(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := root(t, st, "a", "1")
	roots := map[string]store.Path{"pkgs.a": a}

	old, _, err := profile.Record(ctx, st, "system", roots, "blake3:1", "system.cue")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(st.Physical(old.Toplevel), "roots.json"))
	if err != nil || strings.Contains(string(b), "config") {
		t.Errorf("an object without an origin: %s (%v), want no config", b, err)
	}
	from := func(dir string) profile.Origin {
		return profile.Origin{Hash: "blake3:1", Config: "system.cue", Dir: dir, Files: []string{"policy.cue", "system.cue"}}
	}
	g2, recorded, err := profile.RecordFrom(ctx, st, "system", roots, from("/home/u/one"))
	if err != nil || !recorded || g2.Number != 2 || g2.ConfigDir != "/home/u/one" {
		t.Fatalf("from /home/u/one: %+v, recorded %v, %v; want generation 2", g2, recorded, err)
	}
	if again, recorded, _ := profile.RecordFrom(ctx, st, "system", roots, from("/home/u/one")); recorded || again.Number != 2 {
		t.Errorf("from /home/u/one again: generation %d, recorded %v; want 2, not recorded", again.Number, recorded)
	}
	if g3, recorded, _ := profile.RecordFrom(ctx, st, "system", roots, from("/home/u/two")); !recorded || g3.Number != 3 {
		t.Errorf("from /home/u/two: generation %d, recorded %v; want 3, recorded", g3.Number, recorded)
	}
	gens, err := profile.List(ctx, st, "system")
	if err != nil || len(gens) != 3 {
		t.Fatalf("list: %+v (%v)", gens, err)
	}
	for i, want := range []string{"", "/home/u/one", "/home/u/two"} {
		g := gens[i]
		if g.ConfigDir != want || want != "" && !slices.Equal(g.ConfigFiles, []string{"policy.cue", "system.cue"}) || g.Roots["pkgs.a"] != a {
			t.Errorf("generation %d: dir %q, files %q, roots %v; want dir %q", g.Number, g.ConfigDir, g.ConfigFiles, g.Roots, want)
		}
	}
	obj, err := profile.ReadObject(filepath.Join(st.Dir, "profiles", "system"))
	if err != nil || obj.ConfigDir != "/home/u/two" || obj.Profile != "system" || obj.Roots["pkgs.a"] != a {
		t.Errorf("ReadObject(profiles/system) = %+v, %v", obj, err)
	}
}
