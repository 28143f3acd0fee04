// Package pathtest makes stores and store paths for the tests of the
// packages that carry paths between stores (archive, registry, pkgimage):
// a store in a temporary directory, a path installed from a small table
// of files, the same two-path closure, and deterministic test keys. It is
// imported by tests only.
package pathtest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// NewStore opens a store in a temporary directory, closed when t ends.
func NewStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Install makes a path named name holding files (a "/" suffix makes a
// directory, a "->" value a symlink, a "*" suffix an executable) and referring to refs, through store.Install.
func Install(t testing.TB, s *store.Store, name string, files map[string]string, refs ...store.Path) store.Path {
	t.Helper()
	ctx := context.Background()
	keys := slices.Sorted(maps.Keys(files))
	d := &store.Derivation{Name: name, System: "x86_64-linux", Builder: builtins.Prefix + "test", Args: keys}
	p, err := d.Path()
	if err != nil {
		t.Fatal(err)
	}
	gc, err := s.LockGC(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Unlock()
	tmp, err := s.TempDir("add-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v := files[k]
		f := filepath.Join(out, strings.TrimSuffix(strings.TrimSuffix(k, "/"), "*"))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(k, "/"):
			err = os.MkdirAll(f, 0o755)
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(v[2:], f)
		case strings.HasSuffix(k, "*"):
			err = os.WriteFile(f, []byte(v), 0o755)
		default:
			err = os.WriteFile(f, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Install(ctx, store.InstallRequest{Path: p, Source: out, References: refs, Deriver: p.Hash}); err != nil {
		t.Fatal(err)
	}
	return p
}

// Key is the test key of name: the same on every run.
func Key(t testing.TB, name string) *trust.SecretKey {
	t.Helper()
	seed := sha256.Sum256([]byte("test key " + name))
	k, err := trust.KeyFromSeed(name, seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// BenchPaths installs the benchmark data of the packages that move paths
// between stores: 8 paths of 8 MiB each (16 files of 512 KiB, half random
// bytes, half text), and returns them with their total size.
func BenchPaths(tb testing.TB, s *store.Store) ([]store.Path, int64) {
	tb.Helper()
	r := rand.New(rand.NewSource(1))
	var ps []store.Path
	var total int64
	text := strings.Repeat("the quick brown fox jumps over the lazy dog 0123456789\n", 512<<10/55+1)[:512<<10]
	for i := range 8 {
		files := map[string]string{}
		for j := range 16 {
			if j%2 == 0 {
				buf := make([]byte, 512<<10)
				r.Read(buf)
				files[fmt.Sprintf("lib/f%02d.bin", j)] = string(buf)
			} else {
				files[fmt.Sprintf("share/f%02d.txt", j)] = text
			}
			total += 512 << 10
		}
		ps = append(ps, Install(tb, s, fmt.Sprintf("p%d", i), files))
	}
	return ps, total
}

// Attest signs a build statement about p (whose subject the caller made)
// with signer's test key, at now, keeps it in s's attestations when s is
// not nil, and returns the envelope.
func Attest(tb testing.TB, s *store.Store, p store.Path, sub trust.Subject, signer string, now time.Time) []byte {
	tb.Helper()
	env, err := trust.Sign(&trust.Claim{Kind: trust.Built, Subject: sub, Builder: "test", Time: now}, Key(tb, signer))
	if err != nil {
		tb.Fatal(err)
	}
	if s != nil {
		if _, _, err := trust.StoreDir(s.Dir).Add(p.Base(), env); err != nil {
			tb.Fatal(err)
		}
	}
	return env
}
