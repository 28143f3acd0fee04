package realize_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	_ "hephc.dev/hephc/builder" // fetch-file, the fetch that fills the disk
	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// fillBuilder builds testdata/fill, a builder that writes N bytes, for
// one test (the go command's cache makes it quick after the first).
func fillBuilder(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "fill")
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, "./testdata/fill")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the fill builder: %v\n%s", err, out)
	}
	return exe
}

// smallDisk mounts a tmpfs of size bytes for the test.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system needs root (CI runs the tests as root)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size="+strconv.FormatInt(size, 10)); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// fullDiskStore opens a store on a small file system and adds the fill
// builder to it as f.Tool.
func fullDiskStore(t *testing.T) *storetest.Fixture {
	t.Helper()
	exe := fillBuilder(t)
	st, err := store.Open(filepath.Join(smallDisk(t, 24<<20), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := st.Add(context.Background(), exe, "fill")
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := st.QueryPathInfo(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f := &storetest.Fixture{St: st, G: &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}, Origins: map[store.DrvHash]store.Origin{}}}
	f.Tool = f.Add(t, &store.Derivation{Name: "fill", Builder: builtins.FetchFile, OutputHash: info.ContentHash.String(), Attrs: map[string]any{"file": "fill"}}, "tool")
	if f.G.PathOf(f.Tool) != p {
		t.Fatalf("the fill tool is %s, Add made %s", f.G.PathOf(f.Tool), p)
	}
	return f
}

// fillDisk writes a file beside the store that leaves about leave bytes
// free on its file system, and returns it.
func fillDisk(t *testing.T, st *store.Store, leave int64) string {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(st.Dir, &fs); err != nil {
		t.Fatal(err)
	}
	n := int64(fs.Bfree)*fs.Bsize - leave
	filler := filepath.Join(filepath.Dir(st.Dir), "filler")
	f, err := os.OpenFile(filler, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for n > 0 {
		k, err := f.Write(buf[:min(n, int64(len(buf)))])
		if errors.Is(err, unix.ENOSPC) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n -= int64(k)
	}
	return filler
}

// wantNoSpace fails unless err is a *store.NoSpaceError whose message
// names ENOSPC and what.
func wantNoSpace(t *testing.T, err error, what string) {
	t.Helper()
	var ns *store.NoSpaceError
	if !errors.As(err, &ns) || !strings.Contains(err.Error(), "ENOSPC") || !strings.Contains(err.Error(), what) {
		t.Fatalf("got %v, want an error saying the store's file system is full (ENOSPC) and naming %s", err, what)
	}
	t.Log(err)
}

// wantStoreIntact fails unless ps are not valid, every valid path
// verifies, and nothing is left in Dir/tmp.
func wantStoreIntact(t *testing.T, st *store.Store, ps ...store.Path) {
	t.Helper()
	if v := storetest.Valid(t, st, ps...); len(v) != 0 {
		t.Fatalf("registered after the disk filled up: %v", v)
	}
	if problems := verify(t, st); len(problems) != 0 {
		t.Fatalf("after the disk filled up: %v", problems)
	}
	if left, _ := os.ReadDir(filepath.Join(st.Dir, "tmp")); len(left) != 0 {
		t.Fatalf("tmp holds %s after the disk filled up", left[0].Name())
	}
}

// TestFullDiskDuringBuild: a build whose output fills the store's file
// system fails naming ENOSPC and its path; nothing is registered, the
// database is usable, the store verifies, and once space is freed the
// same realization succeeds.
func TestFullDiskDuringBuild(t *testing.T) {
	f := fullDiskStore(t)
	big := f.Step(t, "big", nil, nil, strconv.Itoa(8<<20))
	filler := fillDisk(t, f.St, 2<<20)
	_, err := f.Realize(t, realize.Options{}, big)
	wantNoSpace(t, err, f.G.PathOf(big).String())
	var be *realize.BuildError
	if !errors.As(err, &be) {
		t.Errorf("got %T, want a *realize.BuildError", err)
	}
	wantStoreIntact(t, f.St, f.G.PathOf(big))

	os.Remove(filler)
	if _, err := f.Realize(t, realize.Options{}, big); err != nil {
		t.Fatal(err)
	}
	if err := storetest.VerifyPath(f.St, f.G.PathOf(big)); err != nil {
		t.Fatal(err)
	}
}

// TestFullDiskDuringFetch: a fetch (fetch-file, a fixed-output
// derivation) that fills the store's file system fails the same way, and
// so does adding a tree (store.Add).
func TestFullDiskDuringFetch(t *testing.T) {
	f := fullDiskStore(t)
	conf := t.TempDir()
	if err := os.WriteFile(filepath.Join(conf, "big"), make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tree, err := fstree.HashTree(filepath.Join(conf, "big"), fstree.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fetch := f.Add(t, &store.Derivation{Name: "big-source", Builder: builtins.FetchFile, OutputHash: tree.Hash.String(), Attrs: map[string]any{"file": "big"}}, "big")
	f.G.Origins[fetch] = store.Origin{Attr: "big", Pos: srcpos.Pos{File: filepath.Join(conf, "system.cue"), Line: 1, Col: 1}}
	filler := fillDisk(t, f.St, 2<<20)
	_, err = f.Realize(t, realize.Options{SourceDir: conf}, fetch)
	wantNoSpace(t, err, f.G.PathOf(fetch).String())
	wantStoreIntact(t, f.St, f.G.PathOf(fetch))

	_, err = f.St.Add(context.Background(), conf, "conf")
	wantNoSpace(t, err, conf)
	wantStoreIntact(t, f.St)

	os.Remove(filler)
	if _, err := f.Realize(t, realize.Options{SourceDir: conf}, fetch); err != nil {
		t.Fatal(err)
	}
	p, err := f.St.Add(context.Background(), conf, "conf")
	if err != nil {
		t.Fatal(err)
	}
	if problems := verify(t, f.St, f.G.PathOf(fetch), p); len(problems) != 0 {
		t.Fatal(problems)
	}
}

// TestFullDiskDuringRegistration fills the store's file system once the
// content is in place and hashed, as another process writing would: the
// record, or the database's commit, cannot be written; nothing is
// registered, the database is usable, and the same install succeeds once
// space is freed.
func TestFullDiskDuringRegistration(t *testing.T) {
	ctx := context.Background()
	for _, when := range []string{"before the record", "before the commit"} {
		t.Run(strings.ReplaceAll(when, " ", "-"), func(t *testing.T) {
			f := fullDiskStore(t)
			st := f.St
			p := store.Path{Hash: store.HashDerivation([]byte(when)), Name: "registered"}
			var filler string
			req := func() store.InstallRequest {
				tmp, err := st.TempDir("add-test-")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Remove(tmp) })
				src := filepath.Join(tmp, "out")
				if err := os.WriteFile(src, []byte("content"), 0o644); err != nil {
					t.Fatal(err)
				}
				return store.InstallRequest{Path: p, Source: src, Deriver: p.Hash}
			}
			r := req()
			if when == "before the record" {
				r.Check = func(string, *store.PathInfo) error {
					filler = fillDisk(t, st, 0)
					return nil
				}
			} else {
				st.SyncFS = func() error {
					if filler == "" {
						filler = fillDisk(t, st, 0)
					}
					return nil
				}
			}
			_, err := st.Install(ctx, r)
			st.SyncFS = nil
			os.Remove(filepath.Dir(r.Source))
			wantNoSpace(t, err, p.String())
			wantStoreIntact(t, st, p)
			if _, err := os.Lstat(filepath.Join(st.Dir, "info", p.Hash.String()+".json")); !os.IsNotExist(err) {
				t.Errorf("a failed registration left its record (%v)", err)
			}

			os.Remove(filler)
			if _, err := st.Install(ctx, req()); err != nil {
				t.Fatal(err)
			}
			if err := storetest.VerifyPath(st, p); err != nil {
				t.Fatal(err)
			}
		})
	}
}
