// Package storetest holds what the tests of the store and of realize
// share: a store holding internal/testbuilder, a graph of builds it runs,
// and direct looks at the database. It is for tests only.
package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// TestBuilder is internal/testbuilder, built by Main; a worker process
// that Main did not run finds it in $HEPHC_TEST_BUILDER.
var TestBuilder = os.Getenv(BuilderEnv)

// BuilderEnv hands TestBuilder to worker processes.
const BuilderEnv = "HEPHC_TEST_BUILDER"

// Main builds TestBuilder once, runs the tests, and returns their exit
// code. The caller's TestMain calls sandbox.Init first.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hephc-store-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	TestBuilder = filepath.Join(dir, "testbuilder")
	cmd := exec.Command("go", "build", "-trimpath", "-o", TestBuilder, "hephc.dev/hephc/internal/testbuilder")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building testbuilder: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// TB is what fixtures need of a test; a worker process has no testing.T.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Fixture is a store holding the test builder, and a graph to add
// derivations to.
type Fixture struct {
	St   *store.Store
	G    *store.Graph
	Tool store.DrvHash
}

// New opens the store in dir and adds the test builder to it.
func New(t TB, dir string) *Fixture {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := st.Add(context.Background(), TestBuilder, "testbuilder")
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := st.QueryPathInfo(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	tool := &store.Derivation{Name: "testbuilder", Builder: builtins.FetchFile, OutputHash: info.ContentHash.String(), Attrs: map[string]any{"file": "testbuilder"}}
	f := &Fixture{St: st, G: &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}, Origins: map[store.DrvHash]store.Origin{}}}
	f.Tool = f.Add(t, tool, "tool")
	if f.Tool != p.Hash {
		t.Fatalf("got tool path %s, want the path Add gave, %s", f.G.PathOf(f.Tool), p)
	}
	return f
}

// Add adds d to the graph, written at attr.
func (f *Fixture) Add(t TB, d *store.Derivation, attr string) store.DrvHash {
	t.Helper()
	if d.System == "" {
		d.System = "x86_64-linux"
	}
	h, err := d.Hash()
	if err != nil {
		t.Fatal(err)
	}
	f.G.Derivations[h] = d
	f.G.Origins[h] = store.Origin{Attr: attr, Pos: srcpos.Pos{File: "test.cue", Line: 1, Col: 1}}
	return h
}

// Step adds a derivation run by the test builder with the given steps and
// inputs (besides the tool), written at pkgs.NAME.
func (f *Fixture) Step(t TB, name string, inputs map[string]store.DrvHash, env map[string]string, steps ...string) store.DrvHash {
	t.Helper()
	in := map[string]store.DrvHash{"tool": f.Tool}
	for k, v := range inputs {
		in[k] = v
	}
	return f.Add(t, &store.Derivation{Name: name, Builder: "@{tool}", Args: steps, Inputs: in, Env: env}, "pkgs."+name)
}

// Realize realizes roots of the graph.
func (f *Fixture) Realize(t TB, opts realize.Options, roots ...store.DrvHash) (*realize.Result, error) {
	t.Helper()
	return realize.Realize(context.Background(), f.St, f.G, roots, opts)
}

// OpenDB opens the database of the store in dir beside the store, for
// what tests check or set up directly. The caller closes it.
func OpenDB(t TB, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", store.DBURI(dir)+"?_pragma=busy_timeout(30000)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// BuildCount returns how many times h was built to the end (status ok).
func BuildCount(t TB, st *store.Store, h store.DrvHash) int {
	t.Helper()
	db := OpenDB(t, st.Dir)
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM builds WHERE drv = ? AND status = 'ok'`, h.String()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Link makes a symlink like ./result to p in a new directory and records
// it as a root.
func Link(t *testing.T, st *store.Store, name string, p store.Path) string {
	t.Helper()
	l := filepath.Join(t.TempDir(), name)
	if err := st.AddRoot(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(st.Physical(p), l); err != nil {
		t.Fatal(err)
	}
	return l
}

// Valid returns which of ps are valid.
func Valid(t *testing.T, st *store.Store, ps ...store.Path) map[store.Path]bool {
	t.Helper()
	v, err := st.ValidPaths(context.Background(), ps)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// VerifyPath re-hashes p's content: nil if it is what the database
// recorded, else its problem (a *realize.VerifyProblem) or an error.
func VerifyPath(st *store.Store, p store.Path) error {
	problems, _, err := realize.Verify(context.Background(), st, []store.Path{p}, realize.VerifyOptions{Jobs: 1})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return problems[0]
	}
	return nil
}
