package gendiff_test

import (
	"context"
	"os"
	"testing"

	"hephc.dev/hephc/gendiff"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/store"
)

// FromStore's test realizes graphs: the test binary is the sandbox's init.
func TestMain(m *testing.M) {
	sandbox.Init()
	os.Exit(storetest.Main(m))
}

// TestFromStore realizes two versions of a package and diffs them as the
// store recorded them.
func TestFromStore(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	lib1 := f.Step(t, "lib", nil, nil, "file=v=1")
	app1 := f.Step(t, "app", map[string]store.DrvHash{"lib": lib1}, map[string]string{"LIB": "@{lib}"}, "ref=LIB")
	lib2 := f.Add(t, &store.Derivation{Name: "lib", Version: "2", Builder: "@{tool}", Args: []string{"file=v=2"}, Inputs: map[string]store.DrvHash{"tool": f.Tool}}, "pkgs.lib")
	app2 := f.Step(t, "app", map[string]store.DrvHash{"lib": lib2}, map[string]string{"LIB": "@{lib}"}, "ref=LIB")
	if _, err := f.Realize(t, realize.Options{}, app1, app2); err != nil {
		t.Fatal(err)
	}
	side := func(app store.DrvHash) *gendiff.Side {
		s, err := gendiff.FromStore(ctx, f.St, map[string]store.Path{"pkgs.app": f.G.PathOf(app)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old, new := side(app1), side(app2)
	if len(old.Graph.Derivations) != 3 || old.Sizes[f.G.PathOf(lib1)] != 1 {
		t.Errorf("the side of app 1 has %d derivations and lib's size %d; want app, lib, the tool, and 1 byte", len(old.Graph.Derivations), old.Sizes[f.G.PathOf(lib1)])
	}
	diff, err := gendiff.Compare(old, new)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff.Changed) != 2 || diff.Changed[0].Key != "pkgs.app" || diff.Changed[1].Key != "pkgs.lib" {
		t.Fatalf("got changes %+v, want pkgs.app and pkgs.lib", diff.Changed)
	}
	why := diff.Changed[0].Why
	if len(why) == 0 || why[0].Attr != "pkgs.lib" || len(why[0].Via) != 1 || why[0].Via[0] != "inputs.lib" {
		t.Errorf("app changed because of %+v, want pkgs.lib via inputs.lib", why)
	}
	if _, err := gendiff.FromStore(ctx, f.St, map[string]store.Path{"x": {Hash: store.HashDerivation([]byte("x")), Name: "x"}}); err == nil {
		t.Errorf("a side of a path that is not valid: no error")
	}
}
