package realize_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
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

func verify(t *testing.T, st *store.Store, ps ...store.Path) []*realize.VerifyProblem {
	t.Helper()
	problems, n, err := realize.Verify(context.Background(), st, ps, realize.VerifyOptions{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) > 0 && n != len(ps) {
		t.Errorf("checked %d paths, want %d", n, len(ps))
	}
	return problems
}

func TestVerifyFindsAndRepairsAFlippedByte(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	a := f.Step(t, "a", nil, nil, "file=data=hello from a")
	b := f.Step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A", "file=more=b")
	if _, err := f.Realize(t, realize.Options{}, b); err != nil {
		t.Fatal(err)
	}
	pa, pb := f.G.PathOf(a), f.G.PathOf(b)
	if ps := verify(t, f.St); len(ps) != 0 {
		t.Fatalf("a fresh store does not verify: %v", ps)
	}
	info, _, err := f.St.QueryPathInfo(ctx, pa)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(f.St.Physical(pa), "data")
	flipByte(t, file)

	problems := verify(t, f.St)
	if len(problems) != 1 || problems[0].Path != pa || problems[0].Want != info.ContentHash || problems[0].Got == info.ContentHash || problems[0].Err != nil {
		t.Fatalf("got problems %v, want one: %s modified", problems, pa)
	}
	if err := storetest.VerifyPath(f.St, pa); err == nil {
		t.Fatalf("VerifyPath: got no error for a modified path")
	}
	t.Log(problems[0])

	// a is referred to by b: repairing keeps its row and references.
	res, err := realize.Repair(ctx, f.St, []store.Path{pa}, realize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("got %v, want a repaired", res)
	}
	if ps := verify(t, f.St); len(ps) != 0 {
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
	if fi, err := os.Stat(f.St.Physical(pa)); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("got directory mode %v after the repair, want 0555 (%v)", fi.Mode(), err)
	}
	bi, _, err := f.St.QueryPathInfo(ctx, pb)
	if err != nil || len(bi.References) != 1 || bi.References[0] != pa {
		t.Errorf("b's references after the repair: %v (%v), want [%s]", bi.References, err, pa)
	}
	if entries, _ := os.ReadDir(filepath.Join(f.St.Dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp holds %d entries after the repair", len(entries))
	}
}

func TestRepairMissingPathAndCollectedInputs(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	in := f.Step(t, "in", nil, nil, "file=x=input")
	// out reads its input but does not refer to it: after GC, in is gone.
	out := f.Step(t, "out", map[string]store.DrvHash{"in": in}, nil, "cat=@{in}/x", "single=out")
	if _, err := f.Realize(t, realize.Options{}, out); err != nil {
		t.Fatal(err)
	}
	pin, pout := f.G.PathOf(in), f.G.PathOf(out)
	storetest.Link(t, f.St, "result", pout)
	storetest.Link(t, f.St, "tool", f.G.PathOf(f.Tool))
	if _, err := f.St.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := storetest.Valid(t, f.St, pin, pout); v[pin] || !v[pout] {
		t.Fatalf("got valid %v, want only out", v)
	}
	if err := fstree.RemoveTree(f.St.Physical(pout)); err != nil {
		t.Fatal(err)
	}
	problems := verify(t, f.St, pout)
	if len(problems) != 1 || !problems[0].Missing() {
		t.Fatalf("got %v, want out missing", problems)
	}
	res, err := realize.Repair(ctx, f.St, []store.Path{pout}, realize.Options{})
	if err != nil || res[0].Err != nil {
		t.Fatalf("repair: %v %v", err, res)
	}
	if ps := verify(t, f.St); len(ps) != 0 {
		t.Fatalf("after the repair: %v", ps)
	}
	// The input, which the repair needed, was built again.
	if v := storetest.Valid(t, f.St, pin); !v[pin] {
		t.Errorf("the input %s was not realized for the repair", pin)
	}
}

func TestRepairRefusesAddedPaths(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	tool := f.G.PathOf(f.Tool)
	flipByte(t, f.St.Physical(tool))
	problems := verify(t, f.St)
	if len(problems) != 1 || problems[0].Path != tool {
		t.Fatalf("got %v, want the tool modified", problems)
	}
	res, err := realize.Repair(context.Background(), f.St, []store.Path{tool}, realize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var nr *realize.NotRepairableError
	if !errors.As(res[0].Err, &nr) {
		t.Fatalf("got %v, want a NotRepairableError", res[0].Err)
	}
	t.Log(res[0].Err)
	if len(verify(t, f.St)) != 1 {
		t.Errorf("a refused repair changed something")
	}
}

func TestRepairRefusesADifferentRebuild(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	a := f.Step(t, "a", nil, nil, "file=data=1")
	if _, err := f.Realize(t, realize.Options{}, a); err != nil {
		t.Fatal(err)
	}
	pa := f.G.PathOf(a)
	// Pretend the first build made something else, as a builder that is
	// not reproducible would.
	db := storetest.OpenDB(t, f.St.Dir)
	_, err := db.Exec(`UPDATE paths SET content_hash = ? WHERE path = ?`, "blake3:0000000000000000000000000000000000000000000000000000000000000000", pa.String())
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	res, err := realize.Repair(ctx, f.St, []store.Path{pa}, realize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var nr *realize.NotReproducibleError
	if !errors.As(res[0].Err, &nr) {
		t.Fatalf("got %v, want a NotReproducibleError", res[0].Err)
	}
	got, _ := os.ReadFile(filepath.Join(f.St.Physical(pa), "data"))
	if string(got) != "1" {
		t.Errorf("a refused repair changed the content to %q", got)
	}
}
