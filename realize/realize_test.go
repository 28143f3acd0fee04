package realize_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/sandbox"
	"hephc.dev/hephc/store"
)

func TestMain(m *testing.M) {
	sandbox.Init()
	if os.Getenv(workerEnv) != "" {
		os.Exit(realizeWorker())
	}
	os.Exit(storetest.Main(m))
}

func TestRealizeBuildsRegistersAndFindsReferences(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	a := f.Step(t, "a", nil, nil, "file=hello=world")
	b := f.Step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A", "cat=@{a}/hello")
	res, err := f.Realize(t, realize.Options{Jobs: 2}, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Built), 2; got != want {
		t.Fatalf("built %d paths, want %d", got, want)
	}
	pb := f.G.PathOf(b)
	got, err := os.ReadFile(filepath.Join(f.St.Physical(pb), "ref-A"))
	if err != nil {
		t.Fatal(err)
	}
	if want := f.G.PathOf(a).String(); string(got) != want {
		t.Errorf("b's ref-A holds %q, want %q", got, want)
	}
	info, ok, err := f.St.QueryPathInfo(context.Background(), pb)
	if err != nil || !ok {
		t.Fatalf("b is not valid: %v", err)
	}
	if len(info.References) != 1 || info.References[0] != f.G.PathOf(a) {
		t.Errorf("got references %v, want [%s] (the tool is an input but not referenced)", info.References, f.G.PathOf(a))
	}
	if err := storetest.VerifyPath(f.St, pb); err != nil {
		t.Error(err)
	}
	fi, err := os.Stat(filepath.Join(f.St.Physical(pb), "ref-A"))
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("got mode %v, want read-only 0444 (err %v)", fi.Mode(), err)
	}
	log, err := os.ReadFile(f.St.LogPath(b))
	if err != nil || !strings.Contains(string(log), "world") {
		t.Errorf("got log %q (%v), want it to hold what the build printed", log, err)
	}

	res, err = f.Realize(t, realize.Options{}, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Built) != 0 {
		t.Errorf("second realize built %v, want nothing", res.Built)
	}
}

func TestRealizeEnvironmentIsFixed(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	a := f.Step(t, "env", nil, map[string]string{"MINE": "1"}, "env", "single=x")
	os.Setenv("HEPHC_LEAK_CHECK", "leaked")
	defer os.Unsetenv("HEPHC_LEAK_CHECK")
	if _, err := f.Realize(t, realize.Options{}, a); err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(f.St.LogPath(a))
	for _, want := range []string{"HOME=/homeless-shelter", "MINE=1", "SOURCE_DATE_EPOCH=1", "TMPDIR=/tmp", "out=" + f.G.PathOf(a).String()} {
		if !strings.Contains(string(log), want+"\n") {
			t.Errorf("the build's environment lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(string(log), "leaked") {
		t.Errorf("the host's environment leaked into the build:\n%s", log)
	}
}

func TestRealizeFailureRegistersNothing(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	bad := f.Step(t, "bad", nil, nil, "echo=about to fail", "fail=3")
	after := f.Step(t, "after", map[string]store.DrvHash{"bad": bad}, nil, "single=x")
	other := f.Step(t, "other", nil, nil, "single=y")
	res, err := f.Realize(t, realize.Options{KeepGoing: true, Jobs: 1}, after, other)
	var be *realize.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("got %v, want a BuildError", err)
	}
	if be.Path != f.G.PathOf(bad) || be.Origin.Attr != "pkgs.bad" {
		t.Errorf("got a failure of %s (%s), want %s (pkgs.bad)", be.Path, be.Origin.Attr, f.G.PathOf(bad))
	}
	if !strings.Contains(strings.Join(be.LogTail, "\n"), "failing with 3") {
		t.Errorf("got log tail %q, want the builder's last words", be.LogTail)
	}
	var ee *sandbox.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("got %v, want exit code 3", err)
	}
	valid, _ := f.St.ValidPaths(context.Background(), []store.Path{f.G.PathOf(bad), f.G.PathOf(after), f.G.PathOf(other)})
	if valid[f.G.PathOf(bad)] || valid[f.G.PathOf(after)] {
		t.Errorf("a failed build or its dependent is valid: %v", valid)
	}
	if !valid[f.G.PathOf(other)] {
		t.Errorf("with --keep-going the independent build should be valid")
	}
	if len(res.Built) != 1 {
		t.Errorf("got built %v, want only other", res.Built)
	}
	entries, _ := os.ReadDir(filepath.Join(f.St.Dir, "tmp"))
	if len(entries) != 0 {
		t.Errorf("tmp holds %d leftovers after the failed build", len(entries))
	}
}

func TestRealizeMissingOutputFails(t *testing.T) {
	f := storetest.New(t, t.TempDir())
	lazy := f.Step(t, "lazy", nil, nil, "echo=nothing made")
	_, err := f.Realize(t, realize.Options{}, lazy)
	if err == nil || !strings.Contains(err.Error(), "did not create its output") {
		t.Fatalf("got %v, want an error about the missing output", err)
	}
}

func TestRealizeIsReproducible(t *testing.T) {
	var hashes []string
	for range 2 {
		f := storetest.New(t, t.TempDir())
		a := f.Step(t, "a", nil, nil, "file=x=1", "file=y=2")
		b := f.Step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A")
		if _, err := f.Realize(t, realize.Options{}, b); err != nil {
			t.Fatal(err)
		}
		info, _, err := f.St.QueryPathInfo(context.Background(), f.G.PathOf(b))
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, info.ContentHash.String())
	}
	if hashes[0] != hashes[1] {
		t.Errorf("two builds in two stores gave %s and %s", hashes[0], hashes[1])
	}
}

// TestConcurrentRealizesBuildEachOnce runs two realizations of overlapping
// graphs at once, each with its own connection to one store: both succeed
// and every derivation is built once.
func TestConcurrentRealizesBuildEachOnce(t *testing.T) {
	dir := t.TempDir()
	f := storetest.New(t, dir)
	shared := f.Step(t, "shared", nil, nil, "sleep=200", "single=s")
	left := f.Step(t, "left", map[string]store.DrvHash{"s": shared}, nil, "single=l")
	right := f.Step(t, "right", map[string]store.DrvHash{"s": shared}, nil, "single=r")
	other, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, run := range []func() error{
		func() error {
			_, err := realize.Realize(context.Background(), f.St, f.G, []store.DrvHash{left}, realize.Options{})
			return err
		},
		func() error {
			_, err := realize.Realize(context.Background(), other, f.G, []store.DrvHash{right}, realize.Options{})
			return err
		},
	} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = run() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []store.DrvHash{shared, left, right} {
		n, err := storetest.BuildCount(t, f.St, h), error(nil)
		if err != nil || n != 1 {
			t.Errorf("%s was built %d times (%v), want once", f.G.PathOf(h), n, err)
		}
	}
}
