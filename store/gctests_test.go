package store_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// TestGCKeepsTestResultsOfLivePaths: a test's output (its result) lives
// while a path it tests is live, and goes with it, results and all; a
// live test output does not keep what it tests; a file in the results
// directory that is not a test result keeps nothing.
func TestGCKeepsTestResultsOfLivePaths(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	ctx := context.Background()
	a := f.Step(t, "a", nil, nil, "file=x=a")
	at := f.Step(t, "a-test", nil, nil, "file=result.json=pass")
	b := f.Step(t, "b", nil, nil, "file=x=b")
	bt := f.Step(t, "b-test", nil, nil, "file=result.json=pass")
	c := f.Step(t, "c", nil, nil, "file=x=c")
	if _, err := f.Realize(t, realize.Options{}, a, at, b, bt, c); err != nil {
		t.Fatal(err)
	}
	pa, pat, pb, pbt, pc := f.G.PathOf(a), f.G.PathOf(at), f.G.PathOf(b), f.G.PathOf(bt), f.G.PathOf(c)
	results := trust.Dir(filepath.Join(f.St.Dir, store.TestResultsDir))
	record := func(test, tested store.Path) {
		env, err := trust.SignTestResult(&trust.TestRun{
			Test:       trust.TestSubject{Path: test.String(), Derivation: "00"},
			Tested:     []trust.TestSubject{{Path: tested.String(), Derivation: "01"}},
			Derivation: test.Hash.String(), Result: trust.TestPassed, Runner: "test", Time: time.Unix(0, 0),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []store.Path{test, tested} {
			if _, _, err := results.Add(p.Base(), env); err != nil {
				t.Fatal(err)
			}
		}
	}
	record(pat, pa)
	record(pbt, pb)
	// Hostile or broken files beside c: not test results, they keep
	// nothing alive (and do not fail GC).
	for name, content := range map[string]string{"junk.json": "{", "other.json": `{"payload":"e30="}`} {
		dir := filepath.Join(f.St.Dir, store.TestResultsDir, pc.Base())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	linkA := storetest.Link(t, f.St, "a", pa)
	storetest.Link(t, f.St, "c", pc)
	// b's test output is rooted, b is not: b goes, its test's output stays.
	storetest.Link(t, f.St, "b-test", pbt)

	res, err := f.St.GC(ctx, store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tool := f.G.PathOf(f.Tool)
	if got, want := deletedPaths(res), sorted(pb, tool); !slices.Equal(got, want) {
		t.Fatalf("GC deleted %v, want %v (a's test result lives while a does)", got, want)
	}
	if v := storetest.Valid(t, f.St, pa, pat, pbt, pc); len(v) != 4 {
		t.Fatalf("valid after GC: %v", v)
	}
	if envs, err := results.List(pa.Base()); err != nil || len(envs) != 1 {
		t.Errorf("a's test results after GC: %d, %v", len(envs), err)
	}
	if _, err := os.Stat(filepath.Join(f.St.Dir, store.TestResultsDir, pb.Base())); !os.IsNotExist(err) {
		t.Errorf("b's test results outlived b: %v", err)
	}

	// a's root goes: a and its test's output go, with their results.
	if err := os.Remove(linkA); err != nil {
		t.Fatal(err)
	}
	if res, err = f.St.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := deletedPaths(res), sorted(pa, pat); !slices.Equal(got, want) {
		t.Fatalf("GC deleted %v, want %v", got, want)
	}
	for _, p := range []store.Path{pa, pat} {
		if _, err := os.Stat(filepath.Join(f.St.Dir, store.TestResultsDir, p.Base())); !os.IsNotExist(err) {
			t.Errorf("the test results of %s outlived it: %v", p, err)
		}
	}
	checkStore(t, f.St, true)
}
