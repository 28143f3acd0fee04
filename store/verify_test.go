package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"hephc.dev/hephc/store"
)

// flipByte flips the first byte of a stored (read-only) file, keeping its
// mode.
func flipByte(t *testing.T, file string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

func verify(t *testing.T, st *store.Store, ps ...store.Path) []*store.VerifyProblem {
	t.Helper()
	problems, n, err := st.Verify(context.Background(), ps, store.VerifyOptions{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) > 0 && n != len(ps) {
		t.Errorf("checked %d paths, want %d", n, len(ps))
	}
	return problems
}

func TestVerifyFindsAndRepairsAFlippedByte(t *testing.T) {
	f := newFixture(t, t.TempDir())
	ctx := context.Background()
	a := f.step(t, "a", nil, nil, "file=data=hello from a")
	b := f.step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A", "file=more=b")
	if _, err := f.realize(t, store.RealizeOptions{}, b); err != nil {
		t.Fatal(err)
	}
	pa, pb := f.g.PathOf(a), f.g.PathOf(b)
	if ps := verify(t, f.st); len(ps) != 0 {
		t.Fatalf("a fresh store does not verify: %v", ps)
	}
	info, _, err := f.st.QueryPathInfo(ctx, pa)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(f.st.Physical(pa), "data")
	flipByte(t, file)

	problems := verify(t, f.st)
	if len(problems) != 1 || problems[0].Path != pa || problems[0].Want != info.ContentHash || problems[0].Got == info.ContentHash || problems[0].Err != nil {
		t.Fatalf("got problems %v, want one: %s modified", problems, pa)
	}
	if err := f.st.VerifyPath(ctx, pa); err == nil {
		t.Fatalf("VerifyPath: got no error for a modified path")
	}
	t.Log(problems[0])

	// a is referred to by b: repairing keeps its row and references.
	res, err := f.st.Repair(ctx, []store.Path{pa}, store.RealizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("got %v, want a repaired", res)
	}
	if ps := verify(t, f.st); len(ps) != 0 {
		t.Fatalf("after the repair: %v", ps)
	}
	got, _ := os.ReadFile(file)
	if string(got) != "hello from a" {
		t.Errorf("got %q after the repair, want the original content", got)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("got mode %v after the repair, want 0444 (%v)", fi.Mode(), err)
	}
	if fi, err := os.Stat(f.st.Physical(pa)); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("got directory mode %v after the repair, want 0555 (%v)", fi.Mode(), err)
	}
	bi, _, err := f.st.QueryPathInfo(ctx, pb)
	if err != nil || len(bi.References) != 1 || bi.References[0] != pa {
		t.Errorf("b's references after the repair: %v (%v), want [%s]", bi.References, err, pa)
	}
	if entries, _ := os.ReadDir(filepath.Join(f.st.Dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp holds %d entries after the repair", len(entries))
	}
}

func TestRepairMissingPathAndCollectedInputs(t *testing.T) {
	f := newFixture(t, t.TempDir())
	ctx := context.Background()
	in := f.step(t, "in", nil, nil, "file=x=input")
	// out reads its input but does not refer to it: after GC, in is gone.
	out := f.step(t, "out", map[string]store.DrvHash{"in": in}, nil, "cat=@{in}/x", "single=out")
	if _, err := f.realize(t, store.RealizeOptions{}, out); err != nil {
		t.Fatal(err)
	}
	pin, pout := f.g.PathOf(in), f.g.PathOf(out)
	link(t, f.st, "result", pout)
	link(t, f.st, "tool", f.g.PathOf(f.tool))
	if _, err := f.st.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := valid(t, f.st, pin, pout); v[pin] || !v[pout] {
		t.Fatalf("got valid %v, want only out", v)
	}
	if err := store.RemoveTree(f.st.Physical(pout)); err != nil {
		t.Fatal(err)
	}
	problems := verify(t, f.st, pout)
	if len(problems) != 1 || !problems[0].Missing() {
		t.Fatalf("got %v, want out missing", problems)
	}
	res, err := f.st.Repair(ctx, []store.Path{pout}, store.RealizeOptions{})
	if err != nil || res[0].Err != nil {
		t.Fatalf("repair: %v %v", err, res)
	}
	if ps := verify(t, f.st); len(ps) != 0 {
		t.Fatalf("after the repair: %v", ps)
	}
	// The input, which the repair needed, was built again.
	if v := valid(t, f.st, pin); !v[pin] {
		t.Errorf("the input %s was not realized for the repair", pin)
	}
}

func TestRepairRefusesAddedPaths(t *testing.T) {
	f := newFixture(t, t.TempDir())
	tool := f.g.PathOf(f.tool)
	flipByte(t, f.st.Physical(tool))
	problems := verify(t, f.st)
	if len(problems) != 1 || problems[0].Path != tool {
		t.Fatalf("got %v, want the tool modified", problems)
	}
	res, err := f.st.Repair(context.Background(), []store.Path{tool}, store.RealizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nr *store.NotRepairableError
	if !errors.As(res[0].Err, &nr) {
		t.Fatalf("got %v, want a NotRepairableError", res[0].Err)
	}
	t.Log(res[0].Err)
	if len(verify(t, f.st)) != 1 {
		t.Errorf("a refused repair changed something")
	}
}

func TestRepairRefusesADifferentRebuild(t *testing.T) {
	f := newFixture(t, t.TempDir())
	ctx := context.Background()
	a := f.step(t, "a", nil, nil, "file=data=1")
	if _, err := f.realize(t, store.RealizeOptions{}, a); err != nil {
		t.Fatal(err)
	}
	pa := f.g.PathOf(a)
	// Pretend the first build made something else, as a builder that is
	// not reproducible would.
	db := openDB(t, f.st.Dir)
	_, err := db.Exec(`UPDATE paths SET content_hash = ? WHERE path = ?`, "blake3:0000000000000000000000000000000000000000000000000000000000000000", pa.String())
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.st.Repair(ctx, []store.Path{pa}, store.RealizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nr *store.NotReproducibleError
	if !errors.As(res[0].Err, &nr) {
		t.Fatalf("got %v, want a NotReproducibleError", res[0].Err)
	}
	got, _ := os.ReadFile(filepath.Join(f.st.Physical(pa), "data"))
	if string(got) != "1" {
		t.Errorf("a refused repair changed the content to %q", got)
	}
}
