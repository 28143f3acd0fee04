package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"hephc.dev/hephc/internal/e2estore"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// The example system is realized once per test binary, into a store the
// end-to-end tests share (CI must stay well under 30 minutes, and a cold
// realize of system.cue is several minutes of it). A test that needs a
// store of its own seeds it from the shared one (seedStore) instead of
// fetching and building again.
//
// The longest e2e tests that come after it (a disk deploy, update and
// add, the binary cache, the trust quorum, the package server and its
// image) are parallel tests: go test runs them once every sequential test
// has ended, two at a time on CI's two cores, where one at a time left a
// core idle for most of 15 minutes. Each works in stores of its own or
// only adds to the shared one, and takes its ports from the kernel.
var shared struct {
	once   sync.Once
	dir    string          // the shared store
	owner  *e2estore.Owner // when other test binaries may read it
	stderr string          // what the first realize printed
	took   time.Duration   // how long it took
	err    error
}

// systemStore returns the shared store holding the realized system.cue of
// the repository, realizing it the first time it is asked. Tests may add
// to it (generations, other roots) but must not delete from it or assume
// which generation is current.
func systemStore(t *testing.T) (dir, firstStderr string, took time.Duration) {
	t.Helper()
	e2e(t, "fetches the pinned sources and builds the whole example system")
	shared.once.Do(func() {
		repo, err := filepath.Abs("../..")
		if err != nil {
			shared.err = err
			return
		}
		seed := os.Getenv(seedEnv)
		if seed == "" {
			// From nothing: other test binaries of this go command may
			// compare with it (builder's TestImageIsReproducible).
			if shared.owner, err = e2estore.Announce(repo); err == nil {
				shared.dir = shared.owner.Store()
			}
		}
		if shared.dir == "" {
			if shared.dir, shared.err = os.MkdirTemp("", "hephc-e2e-store-"); shared.err != nil {
				return
			}
		}
		if seed != "" {
			if shared.err = seedSharedStore(shared.dir, seed); shared.err != nil {
				return
			}
		}
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: os.Getenv, store: shared.dir}
		start := time.Now()
		if code := run(e, []string{"--store", shared.dir, "realize", "--no-link", "system.cue"}); code != 0 {
			shared.err = &realizeError{code: code, stderr: stderr.String()}
		}
		shared.took = time.Since(start)
		shared.stderr = stderr.String()
		if shared.owner != nil {
			if err := shared.owner.Done(shared.err == nil); err != nil && shared.err == nil {
				shared.err = err
			}
		}
	})
	if shared.err != nil {
		t.Fatalf("realizing system.cue into the shared store: %v", shared.err)
	}
	return shared.dir, shared.stderr, shared.took
}

// seedEnv names a store a developer already realized system.cue into: the
// shared store starts as a copy of its valid paths and test results, so
// a run of one e2e test builds only what changed. CI never sets it (its
// realize is cold, as a fresh machine's).
const seedEnv = "HEPHC_TEST_SEED_STORE"

// seedSharedStore copies every valid path of the store at seed, and its
// test results, into the empty store at dir.
func seedSharedStore(dir, seed string) error {
	src, err := store.Open(seed)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", seedEnv, seed, err)
	}
	defer src.Close()
	st, err := store.Open(dir)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	paths, err := src.ValidPathList(ctx)
	if err != nil {
		return err
	}
	if _, err := realize.Substitute(ctx, st, src, nil, paths...); err != nil {
		return fmt.Errorf("seeding from %s: %w", seed, err)
	}
	// test-results/<base name>/<sha256>.json (trust.Dir's layout).
	results := filepath.Join(seed, TestResultsDir)
	if _, err := os.Stat(results); err != nil {
		return nil
	}
	return os.CopyFS(filepath.Join(dir, TestResultsDir), os.DirFS(results))
}

type realizeError struct {
	code   int
	stderr string
}

func (e *realizeError) Error() string {
	return fmt.Sprintf("hephc realize system.cue: exit %d\n%s", e.code, e.stderr)
}

// cleanupM runs the tests, then removes the shared store and the
// programs built for the scripts.
type cleanupM struct{ m *testing.M }

func (c cleanupM) Run() int {
	defer removeToolDirs()
	defer removeSharedStore()
	return c.m.Run()
}

// removeSharedStore removes the shared store when the test binary ends.
func removeSharedStore() {
	if shared.owner != nil {
		// Waits for the readers in other test binaries.
		shared.owner.Close()
		return
	}
	if shared.dir != "" {
		// Store paths are read-only: make them writable to remove them.
		filepath.WalkDir(shared.dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(shared.dir)
	}
}

// seedStore makes a new store at dst hold copies of the given paths of the
// shared store and their closures (through store.Install, as any
// substitution), so a test can build on top of sources and programs the
// shared realize already fetched and built (the shared store is trusted:
// no admission). It returns nothing: the paths
// are valid in dst or the test fails.
func seedStore(t *testing.T, dst string, paths ...store.Path) {
	t.Helper()
	dir, _, _ := systemStore(t)
	src, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, err := store.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := realize.Substitute(context.Background(), st, src, nil, paths...); err != nil {
		t.Fatalf("seeding %s from the shared store: %v", dst, err)
	}
}

// sharedFixedOutputs lists the fixed-output paths (fetched, pinned
// sources: the toolchain, modules, local files) valid in the shared store.
func sharedFixedOutputs(t *testing.T) []store.Path {
	t.Helper()
	dir, _, _ := systemStore(t)
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.ValidPathList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var fods []store.Path
	for _, p := range all {
		info, ok, err := st.QueryPathInfo(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if ok && info.CA != "" {
			fods = append(fods, p)
		}
	}
	return fods
}
