package realize_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

const workerEnv = "HEPHC_TEST_REALIZE_WORKER"

// killGraph is a chain and a fan of small builds with short sleeps, so
// that a kill lands in every phase: building, hashing, moving, registering.
func killGraph(t storetest.TB, f *storetest.Fixture) []store.DrvHash {
	var roots []store.DrvHash
	prev := f.Step(t, "k0", nil, nil, "sleep=20", "file=a=0")
	for i := 1; i < 8; i++ {
		prev = f.Step(t, "k"+strconv.Itoa(i), map[string]store.DrvHash{"prev": prev}, map[string]string{"P": "@{prev}"}, "sleep=15", "ref=P", fmt.Sprintf("file=n=%d", i))
		roots = append(roots, prev)
	}
	for i := 0; i < 6; i++ {
		roots = append(roots, f.Step(t, "fan"+strconv.Itoa(i), nil, nil, fmt.Sprintf("file=f=%d", i)))
	}
	return roots
}

type workerTB struct{}

func (workerTB) Helper()                   {}
func (workerTB) Cleanup(func())            {}
func (workerTB) Fatal(args ...any)         { fmt.Fprintln(os.Stderr, args...); os.Exit(2) }
func (workerTB) Fatalf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...); os.Exit(2) }

// realizeWorker is the process TestRealizeSurvivesSIGKILL kills.
func realizeWorker() int {
	f := storetest.New(workerTB{}, os.Getenv(workerEnv))
	roots := killGraph(workerTB{}, f)
	if _, err := realize.Realize(context.Background(), f.St, f.G, roots, realize.Options{Jobs: 2}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestRealizeSurvivesSIGKILL kills a realizing process at 24 different
// moments; after each kill every registered path must verify, and a new
// realization must succeed.
func TestRealizeSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	f := storetest.New(t, dir)
	roots := killGraph(t, f)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 24; i++ {
		delay := time.Duration(i*17) * time.Millisecond
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), workerEnv+"="+dir, storetest.BuilderEnv+"="+storetest.TestBuilder)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		valid, err := f.St.ValidPathList(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range valid {
			if err := storetest.VerifyPath(f.St, p); err != nil {
				t.Fatalf("after a kill at %v: %v", delay, err)
			}
		}
		// Start over from nothing now and then, so that early phases
		// are hit more than once.
		if i%6 == 5 {
			if _, err := realize.Realize(context.Background(), f.St, f.G, roots, realize.Options{}); err != nil {
				t.Fatalf("realize after a kill at %v: %v", delay, err)
			}
			f.St.Close()
			fstree.RemoveTree(dir)
			f = storetest.New(t, dir)
			roots = killGraph(t, f)
		}
	}
	if _, err := realize.Realize(context.Background(), f.St, f.G, roots, realize.Options{}); err != nil {
		t.Fatalf("realize after the kills: %v", err)
	}
	for _, h := range roots {
		if err := storetest.VerifyPath(f.St, f.G.PathOf(h)); err != nil {
			t.Error(err)
		}
	}
}
