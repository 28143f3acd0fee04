package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/refscan"
)

func TestHashStringLenConst(t *testing.T) {
	if refscan.TokenLen != HashStringLen {
		t.Fatalf("refscan.TokenLen = %d, want HashStringLen = %d", refscan.TokenLen, HashStringLen)
	}
	for v := range 32 {
		// The first character encodes the top 5 bits of the first byte.
		if got := hashEncoding.EncodeToString([]byte{byte(v << 3)})[0]; got != refscan.Alphabet[v] {
			t.Errorf("hashEncoding encodes %d as %q, refscan.Alphabet says %q", v, got, refscan.Alphabet[v])
		}
	}
	if strings.Trim(HashDerivation([]byte("x")).String(), refscan.Alphabet) != "" {
		t.Errorf("a derivation hash uses bytes outside refscan.Alphabet")
	}
}

// sampleRefs returns n distinct derivation hashes.
func sampleRefs(n int) []DrvHash {
	hs := make([]DrvHash, n)
	for i := range hs {
		hs[i] = HashDerivation([]byte{byte(i), 'r'})
	}
	return hs
}

func TestHashTreeRefsInNames(t *testing.T) {
	refs := sampleRefs(3)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "share"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "share", refs[1].String()+"-doc"), []byte("no reference inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/heph/store/"+refs[2].String()+"-x/bin", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	cands := []Path{{Hash: refs[0], Name: "a"}, {Hash: refs[1], Name: "b"}, {Hash: refs[2], Name: "c"}}
	_, got, err := hashTree(root, cands)
	if err != nil {
		t.Fatal(err)
	}
	if want := cands[1:]; !slices.Equal(got, want) {
		t.Errorf("refs = %v, want %v (from a file name and a symlink's target)", got, want)
	}
}

// BenchmarkHashTreeRefs is BenchmarkHashTree/large/workers=all (package
// fstree) with 100 references to look for, as after a build:
//
//	go test -run '^$' -bench BenchmarkHashTreeRefs -benchtime 5x ./store
func BenchmarkHashTreeRefs(b *testing.B) {
	root := b.TempDir()
	r := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 64<<20)
	for i := range 4 {
		r.Read(buf)
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("big%d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var cands []Path
	for _, h := range sampleRefs(100) {
		cands = append(cands, Path{Hash: h, Name: "x"})
	}
	hashTree(root, cands) // warm the page cache
	b.SetBytes(4 * 64 << 20)
	for b.Loop() {
		if _, _, err := hashTree(root, cands); err != nil {
			b.Fatal(err)
		}
	}
}
