package realize_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// TestVerifyFindsAndRestoresUnsafeModes: setuid and setgid bits, entries
// writable by group or others, and (as root) entries another uid owns
// are found though the content hashes the same, and a repair restores
// them in place, with no rebuild: the tool was added, not built, and
// cannot be rebuilt.
func TestVerifyFindsAndRestoresUnsafeModes(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	a := f.Step(t, "a", nil, nil, "file=data=hello from a", "file=other=x")
	if _, err := f.Realize(t, realize.Options{}, a); err != nil {
		t.Fatal(err)
	}
	pa, tool := f.G.PathOf(a), f.G.PathOf(f.Tool)
	builds := storetest.BuildCount(t, f.St, a)
	if err := os.Chmod(f.St.Physical(tool), 0o555|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.St.Physical(pa), 0o777); err != nil {
		t.Fatal(err)
	}
	owned := os.Geteuid() == 0
	if owned {
		if err := os.Lchown(filepath.Join(f.St.Physical(pa), "other"), 4242, 4242); err != nil {
			t.Fatal(err)
		}
	}
	problems := verify(t, f.St)
	if len(problems) != 2 {
		t.Fatalf("got problems %v, want %s and %s", problems, pa, tool)
	}
	want := map[store.Path][]string{
		tool: {"mode 6555 (setuid, setgid), want 0555"},
		pa:   {".: mode 0777 (writable by group and others, writable by its owner), want 0555"},
	}
	if owned {
		want[pa] = append(want[pa], "other: owned by uid 4242, want 0")
	}
	for _, p := range problems {
		if !p.ContentIntact() || p.Modified() || p.Record != nil {
			t.Errorf("%s: content intact %v, record %v; want only modes", p.Path, p.ContentIntact(), p.Record)
		}
		for _, w := range want[p.Path] {
			if !strings.Contains(p.Error(), w) {
				t.Errorf("got %q, want it to say %q", p, w)
			}
		}
		t.Log(p)
	}
	res, err := realize.Repair(ctx, f.St, []store.Path{tool, pa}, realize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Errorf("repairing %s: %v", r.Path, r.Err)
		}
	}
	if ps := verify(t, f.St); len(ps) != 0 {
		t.Fatalf("after the repair: %v", ps)
	}
	if fi, err := os.Stat(f.St.Physical(tool)); err != nil || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || fi.Mode().Perm() != 0o555 {
		t.Errorf("the tool is %v after the repair (%v), want 0555", fi.Mode(), err)
	}
	if n := storetest.BuildCount(t, f.St, a); n != builds {
		t.Errorf("the repair built a again (%d builds, was %d): modes need no rebuild", n, builds)
	}
}

// TestVerifyFindsAndRewritesLostRecords: a path whose record on disk is
// gone or says something else (what a rebuilt database would be made
// from) does not verify, and a repair rewrites the record.
func TestVerifyFindsAndRewritesLostRecords(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	a := f.Step(t, "a", nil, nil, "file=data=a")
	b := f.Step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A")
	if _, err := f.Realize(t, realize.Options{}, b); err != nil {
		t.Fatal(err)
	}
	pa, pb := f.G.PathOf(a), f.G.PathOf(b)
	recA := filepath.Join(f.St.Dir, "info", pa.Hash.String()+".json")
	recB := filepath.Join(f.St.Dir, "info", pb.Hash.String()+".json")
	if err := os.Remove(recA); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(recB, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recB, []byte(`{"path":"`+pb.String()+`","contentHash":"blake3:0000000000000000000000000000000000000000000000000000000000000000","references":[],"deriver":"`+b.String()+`"}`), 0o444); err != nil {
		t.Fatal(err)
	}
	problems := verify(t, f.St)
	if len(problems) != 2 || problems[0].Record == nil || problems[1].Record == nil || !problems[0].ContentIntact() || !problems[1].ContentIntact() {
		t.Fatalf("got %v, want the records of %s and %s wrong", problems, pa, pb)
	}
	for _, p := range problems {
		t.Log(p)
	}
	res, err := realize.Repair(context.Background(), f.St, []store.Path{pa, pb}, realize.Options{})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("repair: %v %v", res, err)
	}
	if ps := verify(t, f.St); len(ps) != 0 {
		t.Fatalf("after the repair: %v", ps)
	}
}

// TestNextRealizeRemovesKilledBuilds: the directories killed builds left
// in Dir/tmp are removed by the next realization that builds, unless a
// live process holds the lock of the output they are for.
func TestNextRealizeRemovesKilledBuilds(t *testing.T) {
	dir := t.TempDir()
	f := storetest.New(t, dir)
	ctx := context.Background()
	dead, live := f.Step(t, "dead", nil, nil, "single=d"), f.Step(t, "live", nil, nil, "single=l")
	left := func(h store.DrvHash) string {
		d := filepath.Join(dir, "tmp", "build-"+h.String()[:16]+"-12345")
		if err := os.MkdirAll(filepath.Join(d, "store", "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := fstree.Canonicalize(d); err != nil { // read-only, as a build leaves it
			t.Fatal(err)
		}
		return d
	}
	deadDir, liveDir := left(dead), left(live)
	// Another process builds live: it holds live's lock.
	other, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.LockPath(ctx, f.G.PathOf(live))
	if err != nil {
		t.Fatal(err)
	}
	// A new process realizes something else.
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	next := f.Step(t, "next", nil, nil, "single=n")
	if _, err := realize.Realize(ctx, st, f.G, []store.DrvHash{next}, realize.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(deadDir); !os.IsNotExist(err) {
		t.Errorf("the killed build's %s is still there (%v)", deadDir, err)
	}
	if _, err := os.Lstat(liveDir); err != nil {
		t.Errorf("the running build's %s was removed (%v)", liveDir, err)
	}
	lock.Unlock()
	st2, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := realize.Realize(ctx, st2, f.G, []store.DrvHash{dead}, realize.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(liveDir); !os.IsNotExist(err) {
		t.Errorf("%s is still there once no one holds its lock (%v)", liveDir, err)
	}
}
