package store_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/store"
)

// waitFor polls cond until it holds; the test fails after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRegistrationInGroups holds the first install's sync until two more
// installs wait: those two are registered together, with one sync and
// one transaction, and one of them cannot be (its reference is not a
// valid path). It alone fails, with its own error, leaving neither its
// content nor its record; the other is registered.
func TestRegistrationInGroups(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	a, bad, good, missing := testPath("a"), testPath("bad"), testPath("good"), testPath("missing")
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var syncs int
	st.SyncFS = func() error {
		mu.Lock()
		syncs++
		first := syncs == 1
		mu.Unlock()
		if first {
			close(entered)
			<-release
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := map[store.Path]error{}
	install := func(p store.Path, files map[string]string, refs ...store.Path) {
		src := stage(t, st, files)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Install(ctx, store.InstallRequest{Path: p, Source: src, References: refs})
			mu.Lock()
			errs[p] = err
			mu.Unlock()
		}()
	}
	install(a, map[string]string{"f": "a"})
	<-entered
	install(bad, map[string]string{"ref": missing.String()}, missing)
	install(good, map[string]string{"f": "good"})
	waitFor(t, "two installs to wait for registration", func() bool { return st.WaitingRegistrations() == 2 })
	close(release)
	wg.Wait()

	if syncs != 2 {
		t.Errorf("got %d syncs for a group of one, then a group of two; want 2", syncs)
	}
	for _, p := range []store.Path{a, good} {
		if errs[p] != nil {
			t.Errorf("installing %s: %v", p.Name, errs[p])
		}
		if err := storetest.VerifyPath(st, p); err != nil {
			t.Error(err)
		}
	}
	if err := errs[bad]; err == nil || !strings.Contains(err.Error(), bad.String()) || !strings.Contains(err.Error(), "not a valid path") {
		t.Errorf("installing %s: got %v, want its own error naming its reference that is not valid", bad.Name, err)
	}
	if v := storetest.Valid(t, st, bad); v[bad] {
		t.Errorf("%s is registered", bad)
	}
	for _, left := range []string{st.Physical(bad), filepath.Join(st.Dir, "info", bad.Hash.String()+".json")} {
		if exists(left) {
			t.Errorf("a failed registration left %s", left)
		}
	}
}

// TestRegistrationGroupSyncFailure fails the sync of a group of two:
// both fail with the sync's error, each naming its own path.
func TestRegistrationGroupSyncFailure(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	a, b, c := testPath("a"), testPath("b"), testPath("c")
	entered, release := make(chan struct{}), make(chan struct{})
	broken := errors.New("I/O error (injected)")
	var mu sync.Mutex
	var syncs int
	st.SyncFS = func() error {
		mu.Lock()
		syncs++
		n := syncs
		mu.Unlock()
		if n == 1 {
			close(entered)
			<-release
			return nil
		}
		return broken
	}
	var wg sync.WaitGroup
	errs := map[store.Path]error{}
	for _, p := range []store.Path{a, b, c} {
		src := stage(t, st, map[string]string{"f": p.Name})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Install(ctx, store.InstallRequest{Path: p, Source: src})
			mu.Lock()
			errs[p] = err
			mu.Unlock()
		}()
		if p == a {
			<-entered
		}
	}
	waitFor(t, "two installs to wait for registration", func() bool { return st.WaitingRegistrations() == 2 })
	close(release)
	wg.Wait()
	if errs[a] != nil {
		t.Error(errs[a])
	}
	for _, p := range []store.Path{b, c} {
		if err := errs[p]; !errors.Is(err, broken) || !strings.Contains(err.Error(), p.String()) {
			t.Errorf("installing %s: got %v, want the sync's error naming %s", p.Name, err, p)
		}
	}
	if v := storetest.Valid(t, st, a, b, c); !v[a] || v[b] || v[c] {
		t.Errorf("valid: %v; want a alone", v)
	}
}

const killEnv = "HEPHC_TEST_KILL_BEFORE_COMMIT"

// TestKillBetweenSyncAndCommit kills a process installing two paths at
// once right after the sync of their group, before its commit: neither is
// registered, the store opens, and both install again and verify.
func TestKillBetweenSyncAndCommit(t *testing.T) {
	ctx := context.Background()
	a, b, c := testPath("a"), testPath("b"), testPath("c")
	if dir := os.Getenv(killEnv); dir != "" {
		// The process to kill: a is registered, then b and c are synced
		// and the process dies.
		st, err := store.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Install(ctx, store.InstallRequest{Path: a, Source: stage(t, st, map[string]string{"f": "a"})}); err != nil {
			t.Fatal(err)
		}
		st.SyncFS = func() error {
			syscall.Sync()
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		var wg sync.WaitGroup
		for _, p := range []store.Path{b, c} {
			src := stage(t, st, map[string]string{"f": p.Name, "ref": a.String()})
			wg.Add(1)
			go func() {
				defer wg.Done()
				st.Install(ctx, store.InstallRequest{Path: p, Source: src, References: []store.Path{a}})
			}()
		}
		wg.Wait()
		t.Fatal("not killed")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestKillBetweenSyncAndCommit$")
	cmd.Env = append(os.Environ(), killEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the installing process ended with %v, not killed:\n%s", err, out)
	}
	st := openStore(t, dir)
	if v := storetest.Valid(t, st, a, b, c); !v[a] || v[b] || v[c] {
		t.Fatalf("after the kill, valid: %v; want a alone", v)
	}
	if err := storetest.VerifyPath(st, a); err != nil {
		t.Fatal(err)
	}
	for _, p := range []store.Path{b, c} {
		if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: stage(t, st, map[string]string{"f": p.Name, "ref": a.String()}), References: []store.Path{a}}); err != nil {
			t.Fatal(err)
		}
		if err := storetest.VerifyPath(st, p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDerivationRecordWrittenOnce saves a derivation twice: its record
// (drv/<hash>.json) is written once, and again only when where it was
// written changes.
func TestDerivationRecordWrittenOnce(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	d := &store.Derivation{Name: "d", Builder: "builtin:x", System: "x86_64-linux"}
	h, err := d.Hash()
	if err != nil {
		t.Fatal(err)
	}
	g := &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{h: d}, Origins: map[store.DrvHash]store.Origin{h: {Attr: "pkgs.d"}}}
	file := filepath.Join(st.Dir, "drv", h.String()+".json")
	inode := func() uint64 {
		t.Helper()
		if err := st.SaveDerivations(ctx, g, []store.DrvHash{h}); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	first := inode()
	if again := inode(); again != first {
		t.Errorf("the same record was written again (inode %d, then %d)", first, again)
	}
	g.Origins[h] = store.Origin{Attr: "pkgs.moved"}
	if moved := inode(); moved == first {
		t.Errorf("the record was not rewritten when its attribute changed")
	}
	sd, ok, err := st.LoadDerivation(ctx, h)
	if err != nil || !ok || sd.Attr != "pkgs.moved" {
		t.Fatalf("loaded %+v, %v, %v; want it written at pkgs.moved", sd, ok, err)
	}
}
