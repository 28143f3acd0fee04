package registry

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// The fixtures archive, registry and pkgimage tests share.
var newStore = pathtest.NewStore
var install = pathtest.Install
var testKey = pathtest.Key

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// sample makes lib and app (which refers to lib) in s: [app, lib].
func sample(t testing.TB, s *store.Store) []store.Path {
	lib := install(t, s, "lib", map[string]string{"lib/libx.so*": "ELF...", "share/": "", "README": "hello\n", "current": "->lib"})
	app := install(t, s, "app", map[string]string{"bin/app*": "#!/bin/sh\nexec " + lib.String() + "/lib/libx.so\n"}, lib)
	return []store.Path{app, lib}
}

// testPolicy trusts alice, bob and carol and needs n signatures of every
// path.
func testPolicy(t testing.TB, n int) *trust.Policy {
	p := &trust.Policy{Source: fmt.Sprintf("test policy (%d)", n), Rules: []trust.Rule{{Signatures: n}}}
	for _, name := range []string{"alice", "bob", "carol"} {
		p.People = append(p.People, trust.Person{Name: name, Keys: []trust.Key{{Public: testKey(t, name).Public()}}})
	}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	return p
}

// sign attests every path of ps in s by each of signers.
func sign(t testing.TB, s *store.Store, ps []store.Path, signers ...string) {
	t.Helper()
	for _, p := range ps {
		sub, err := archive.StoreSubject(context.Background(), s, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range signers {
			signSubject(t, s, p, sub, n)
		}
	}
}

func signSubject(t testing.TB, s *store.Store, p store.Path, sub trust.Subject, signer string) []byte {
	t.Helper()
	return pathtest.Attest(t, s, p, sub, signer, testNow)
}

// wants are ps as a graph wants them: no pin, no attribute, each one's
// content may refer to any of them.
func wants(ps ...store.Path) []Want {
	var out []Want
	for _, p := range ps {
		out = append(out, Want{Path: p, References: ps})
	}
	return out
}

// storeState lists what s holds: files, attestations, valid paths.
func storeState(t testing.TB, s *store.Store) string {
	var b strings.Builder
	for _, sub := range []string{"store", "attestations"} {
		filepath.WalkDir(filepath.Join(s.Dir, sub), func(p string, d fs.DirEntry, err error) error {
			fmt.Fprintln(&b, strings.TrimPrefix(p, s.Dir))
			return nil
		})
	}
	ps, err := s.ValidPathList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		fmt.Fprintln(&b, "valid", p)
	}
	return b.String()
}

// tmpEmpty fails unless the store's temporary directory is empty.
func tmpEmpty(t testing.TB, s *store.Store) {
	t.Helper()
	if left, _ := os.ReadDir(filepath.Join(s.Dir, "tmp")); len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Fatalf("left in the store's tmp: %v", names)
	}
}
