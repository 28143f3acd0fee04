package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/store"
)

// synthetic is a store filled directly (SQL inserts, os.Mkdir), fast
// enough for 100,000 paths: every path a tiny read-only directory holding
// one file, references a random DAG, and one generation whose toplevel
// keeps the live paths alive.
type synthetic struct {
	live, garbage []store.Path
	toplevel      store.Path
}

// synthStore fills the (new) store in dir with n paths of which garbage
// are reachable from no root. Each path refers to up to 4 earlier ones; a
// live path only to live ones.
func synthStore(t storetest.TB, dir string, n, garbage int, seed uint64) *synthetic {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	rng := rand.New(rand.NewPCG(seed, 1))

	// Every path holds the same file, so one hash serves all.
	tmpl := filepath.Join(dir, "tmp", "synthetic")
	if err := os.Mkdir(tmpl, 0o755); err != nil {
		t.Fatal(err)
	}
	const content = "synthetic output\n"
	if err := os.WriteFile(filepath.Join(tmpl, "data"), []byte(content), 0o444); err != nil {
		t.Fatal(err)
	}
	tree, err := fstree.HashTree(tmpl, fstree.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fstree.RemoveTree(tmpl)

	paths := make([]store.Path, n)
	dead := make([]bool, n)
	for _, i := range rng.Perm(n - 1)[:garbage] {
		dead[i] = true
	}
	for i := range paths {
		var h store.DrvHash
		for k := range h {
			h[k] = byte(rng.Uint32())
		}
		paths[i] = store.Path{Hash: h, Name: fmt.Sprintf("p%d", i)}
	}
	refs := make([][]int, n)
	referred := make([]bool, n)
	var liveSoFar []int
	for i := 0; i < n-1; i++ {
		seen := map[int]bool{}
		for range rng.IntN(5) {
			var j int
			switch {
			case dead[i] && i > 0:
				j = rng.IntN(i)
			case !dead[i] && len(liveSoFar) > 0:
				j = liveSoFar[rng.IntN(len(liveSoFar))]
			default:
				continue
			}
			if !seen[j] {
				seen[j] = true
				refs[i] = append(refs[i], j)
				if !dead[i] {
					referred[j] = true
				}
			}
		}
		if !dead[i] {
			liveSoFar = append(liveSoFar, i)
		}
	}
	top := n - 1
	for _, j := range liveSoFar {
		if !referred[j] {
			refs[top] = append(refs[top], j)
		}
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "db.sqlite")+"?_pragma=busy_timeout(30000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	insPath, err := tx.Prepare(`INSERT INTO paths(id, path, content_hash, size, files, deriver, registered, ca) VALUES (?, ?, ?, ?, 1, ?, 1, '')`)
	if err != nil {
		t.Fatal(err)
	}
	insRef, err := tx.Prepare(`INSERT INTO refs(referrer, reference) VALUES (?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		if _, err := insPath.Exec(i+1, p.String(), tree.Hash.String(), len(content), p.Hash.String()); err != nil {
			t.Fatal(err)
		}
		for _, j := range refs[i] {
			if _, err := insRef.Exec(i+1, j+1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := tx.Exec(`INSERT INTO generations(profile, number, toplevel, created, config_hash, closure_size) VALUES ('synthetic', 1, ?, 1, '', 0)`, paths[top].String()); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO profiles(name, current) VALUES ('synthetic', 1)`); err != nil {
		t.Fatal(err)
	}
	// The records on disk, as a real store's: the next Open writes them
	// (as it does for a database older than they are).
	if _, err := tx.Exec(`DELETE FROM meta WHERE key = 'records'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// The trees, canonical: 0444 files in 0555 directories.
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	workers := runtime.GOMAXPROCS(0) * 2
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				d := filepath.Join(dir, "store", paths[i].Base())
				err := os.Mkdir(d, 0o755)
				if err == nil {
					err = os.WriteFile(filepath.Join(d, "data"), []byte(content), 0o444)
				}
				if err == nil {
					err = os.Chmod(d, 0o555)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	s := &synthetic{toplevel: paths[top]}
	for i, p := range paths {
		if dead[i] {
			s.garbage = append(s.garbage, p)
		} else {
			s.live = append(s.live, p)
		}
	}
	return s
}

// cpuTime is the user and system time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tempStoreDir is a directory for a store that is removed at the end,
// read-only trees and all.
func tempStoreDir(t storetest.TB) string {
	dir, err := os.MkdirTemp("", "hephc-gc-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fstree.RemoveTree(dir) })
	return dir
}

// BenchmarkGC finds and deletes the garbage of a synthetic store: 100,000
// paths with a random reference DAG, 30,000 of them garbage. One op is
// one collection until GC returns (GCOptions.Background: the garbage is
// unregistered, durably, and its files are being removed); done-s/op is
// the time until the files are gone too (GCResult.Wait). The store is
// made anew, outside the timer, each time.
// The store is made in $TMPDIR: most of the time goes to the file
// system's unlink and rmdir, so compare a disk with tmpfs
// (TMPDIR=/dev/shm).
func BenchmarkGC(b *testing.B) {
	const n, garbage = 100000, 30000
	b.Run(fmt.Sprintf("paths=%d", n), func(b *testing.B) {
		var cpu, done time.Duration
		for b.Loop() {
			b.StopTimer()
			dir := tempStoreDir(b)
			syn := synthStore(b, dir, n, garbage, 1)
			st, err := store.Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			// Written back, as a store's paths are: on a disk, deleting
			// a file whose blocks are allocated costs more.
			syscall.Sync()
			runtime.GC()
			before := cpuTime()
			start := time.Now()
			b.StartTimer()
			res, err := st.GC(context.Background(), store.GCOptions{Background: true})
			b.StopTimer()
			if err == nil {
				err = res.Wait()
			}
			done += time.Since(start)
			cpu += cpuTime() - before
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Deleted) != len(syn.garbage) || res.Live != len(syn.live) {
				b.Fatalf("deleted %d and kept %d paths, want %d and %d", len(res.Deleted), res.Live, len(syn.garbage), len(syn.live))
			}
			st.Close()
			fstree.RemoveTree(dir)
			b.StartTimer()
		}
		b.ReportMetric(float64(garbage)*float64(b.N)/b.Elapsed().Seconds(), "paths/s")
		// CPU time (user and system, all threads) says more than the
		// wall clock on a busy machine.
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		b.ReportMetric(done.Seconds()/float64(b.N), "done-s/op")
	})
}
