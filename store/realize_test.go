package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"hephc.dev/hephc/store"
	"hephc.dev/hephc/sandbox"
)

// testBuilder is internal/testbuilder, built once per test binary.
var testBuilder string

func TestMain(m *testing.M) {
	sandbox.Init()
	if os.Getenv(workerEnv) != "" {
		os.Exit(realizeWorker())
	}
	dir, err := os.MkdirTemp("", "hephc-store-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testBuilder = filepath.Join(dir, "testbuilder")
	cmd := exec.Command("go", "build", "-trimpath", "-o", testBuilder, "hephc.dev/hephc/internal/testbuilder")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building testbuilder: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fixture is a store holding the test builder, and a graph to add
// derivations to.
type fixture struct {
	st   *store.Store
	g    *store.Graph
	tool store.DrvHash
}

func newFixture(t tb, dir string) *fixture {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := st.Add(context.Background(), testBuilder, "testbuilder")
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := st.QueryPathInfo(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	tool := &store.Derivation{Name: "testbuilder", Builder: "builtin:fetch-file", OutputHash: info.ContentHash.String(), Attrs: map[string]any{"file": "testbuilder"}}
	f := &fixture{st: st, g: &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}, Origins: map[store.DrvHash]store.Origin{}}}
	f.tool = f.add(t, tool, "tool")
	if f.tool != p.Hash {
		t.Fatalf("got tool path %s, want the path Add gave, %s", f.g.PathOf(f.tool), p)
	}
	return f
}

func (f *fixture) add(t tb, d *store.Derivation, attr string) store.DrvHash {
	t.Helper()
	if d.System == "" {
		d.System = "x86_64-linux"
	}
	h, err := d.Hash()
	if err != nil {
		t.Fatal(err)
	}
	f.g.Derivations[h] = d
	f.g.Origins[h] = store.Origin{Attr: attr, Pos: "test.cue:1:1"}
	return h
}

// step adds a derivation run by the test builder with the given steps and
// inputs (besides the tool).
func (f *fixture) step(t tb, name string, inputs map[string]store.DrvHash, env map[string]string, steps ...string) store.DrvHash {
	t.Helper()
	in := map[string]store.DrvHash{"tool": f.tool}
	for k, v := range inputs {
		in[k] = v
	}
	return f.add(t, &store.Derivation{Name: name, Builder: "@{tool}", Args: steps, Inputs: in, Env: env}, "pkgs."+name)
}

func (f *fixture) realize(t tb, opts store.RealizeOptions, roots ...store.DrvHash) (*store.RealizeResult, error) {
	t.Helper()
	return f.st.Realize(context.Background(), f.g, roots, opts)
}

func TestRealizeBuildsRegistersAndFindsReferences(t *testing.T) {
	f := newFixture(t, t.TempDir())
	a := f.step(t, "a", nil, nil, "file=hello=world")
	b := f.step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A", "cat=@{a}/hello")
	res, err := f.realize(t, store.RealizeOptions{Jobs: 2}, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Built), 2; got != want {
		t.Fatalf("built %d paths, want %d", got, want)
	}
	pb := f.g.PathOf(b)
	got, err := os.ReadFile(filepath.Join(f.st.Physical(pb), "ref-A"))
	if err != nil {
		t.Fatal(err)
	}
	if want := f.g.PathOf(a).String(); string(got) != want {
		t.Errorf("b's ref-A holds %q, want %q", got, want)
	}
	info, ok, err := f.st.QueryPathInfo(context.Background(), pb)
	if err != nil || !ok {
		t.Fatalf("b is not valid: %v", err)
	}
	if len(info.References) != 1 || info.References[0] != f.g.PathOf(a) {
		t.Errorf("got references %v, want [%s] (the tool is an input but not referenced)", info.References, f.g.PathOf(a))
	}
	if err := f.st.VerifyPath(context.Background(), pb); err != nil {
		t.Error(err)
	}
	fi, err := os.Stat(filepath.Join(f.st.Physical(pb), "ref-A"))
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("got mode %v, want read-only 0444 (err %v)", fi.Mode(), err)
	}
	log, err := os.ReadFile(f.st.LogPath(b))
	if err != nil || !strings.Contains(string(log), "world") {
		t.Errorf("got log %q (%v), want it to hold what the build printed", log, err)
	}

	res, err = f.realize(t, store.RealizeOptions{}, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Built) != 0 {
		t.Errorf("second realize built %v, want nothing", res.Built)
	}
}

func TestRealizeEnvironmentIsFixed(t *testing.T) {
	f := newFixture(t, t.TempDir())
	a := f.step(t, "env", nil, map[string]string{"MINE": "1"}, "env", "single=x")
	os.Setenv("HEPHC_LEAK_CHECK", "leaked")
	defer os.Unsetenv("HEPHC_LEAK_CHECK")
	if _, err := f.realize(t, store.RealizeOptions{}, a); err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(f.st.LogPath(a))
	for _, want := range []string{"HOME=/homeless-shelter", "MINE=1", "SOURCE_DATE_EPOCH=1", "TMPDIR=/tmp", "out=" + f.g.PathOf(a).String()} {
		if !strings.Contains(string(log), want+"\n") {
			t.Errorf("the build's environment lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(string(log), "leaked") {
		t.Errorf("the host's environment leaked into the build:\n%s", log)
	}
}

func TestRealizeFailureRegistersNothing(t *testing.T) {
	f := newFixture(t, t.TempDir())
	bad := f.step(t, "bad", nil, nil, "echo=about to fail", "fail=3")
	after := f.step(t, "after", map[string]store.DrvHash{"bad": bad}, nil, "single=x")
	other := f.step(t, "other", nil, nil, "single=y")
	res, err := f.realize(t, store.RealizeOptions{KeepGoing: true, Jobs: 1}, after, other)
	var be *store.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("got %v, want a BuildError", err)
	}
	if be.Path != f.g.PathOf(bad) || be.Origin.Attr != "pkgs.bad" {
		t.Errorf("got a failure of %s (%s), want %s (pkgs.bad)", be.Path, be.Origin.Attr, f.g.PathOf(bad))
	}
	if !strings.Contains(strings.Join(be.LogTail, "\n"), "failing with 3") {
		t.Errorf("got log tail %q, want the builder's last words", be.LogTail)
	}
	var ee *sandbox.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("got %v, want exit code 3", err)
	}
	valid, _ := f.st.ValidPaths(context.Background(), []store.Path{f.g.PathOf(bad), f.g.PathOf(after), f.g.PathOf(other)})
	if valid[f.g.PathOf(bad)] || valid[f.g.PathOf(after)] {
		t.Errorf("a failed build or its dependent is valid: %v", valid)
	}
	if !valid[f.g.PathOf(other)] {
		t.Errorf("with --keep-going the independent build should be valid")
	}
	if len(res.Built) != 1 {
		t.Errorf("got built %v, want only other", res.Built)
	}
	entries, _ := os.ReadDir(filepath.Join(f.st.Dir, "tmp"))
	if len(entries) != 0 {
		t.Errorf("tmp holds %d leftovers after the failed build", len(entries))
	}
}

func TestRealizeMissingOutputFails(t *testing.T) {
	f := newFixture(t, t.TempDir())
	lazy := f.step(t, "lazy", nil, nil, "echo=nothing made")
	_, err := f.realize(t, store.RealizeOptions{}, lazy)
	if err == nil || !strings.Contains(err.Error(), "did not create its output") {
		t.Fatalf("got %v, want an error about the missing output", err)
	}
}

func TestRealizeIsReproducible(t *testing.T) {
	var hashes []string
	for range 2 {
		f := newFixture(t, t.TempDir())
		a := f.step(t, "a", nil, nil, "file=x=1", "file=y=2")
		b := f.step(t, "b", map[string]store.DrvHash{"a": a}, map[string]string{"A": "@{a}"}, "ref=A")
		if _, err := f.realize(t, store.RealizeOptions{}, b); err != nil {
			t.Fatal(err)
		}
		info, _, err := f.st.QueryPathInfo(context.Background(), f.g.PathOf(b))
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
	f := newFixture(t, dir)
	shared := f.step(t, "shared", nil, nil, "sleep=200", "single=s")
	left := f.step(t, "left", map[string]store.DrvHash{"s": shared}, nil, "single=l")
	right := f.step(t, "right", map[string]store.DrvHash{"s": shared}, nil, "single=r")
	other, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, run := range []func() error{
		func() error {
			_, err := f.st.Realize(context.Background(), f.g, []store.DrvHash{left}, store.RealizeOptions{})
			return err
		},
		func() error {
			_, err := other.Realize(context.Background(), f.g, []store.DrvHash{right}, store.RealizeOptions{})
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
		n, err := f.st.BuildCount(context.Background(), h)
		if err != nil || n != 1 {
			t.Errorf("%s was built %d times (%v), want once", f.g.PathOf(h), n, err)
		}
	}
}
