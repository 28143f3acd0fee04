package fstree

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// An entry is one thing to create in a test tree. mode holds the
// permission bits and fs.ModeDir or fs.ModeSymlink; data is a file's
// contents or a symlink's target.
type entry struct {
	path string
	mode fs.FileMode
	data string
}

func file(path, data string) entry      { return entry{path, 0o644, data} }
func execFile(path, data string) entry  { return entry{path, 0o755, data} }
func dir(path string) entry             { return entry{path, fs.ModeDir | 0o755, ""} }
func symlink(path, target string) entry { return entry{path, fs.ModeSymlink, target} }

// makeTree creates entries under root, in the order given, creating
// parent directories as needed. A path of "." means root itself.
func makeTree(t testing.TB, root string, entries ...entry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(root, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case e.mode&fs.ModeDir != 0:
			err = os.MkdirAll(p, e.mode.Perm())
		case e.mode&fs.ModeSymlink != 0:
			err = os.Symlink(e.data, p)
		default:
			if err = os.WriteFile(p, []byte(e.data), 0o600); err == nil {
				err = os.Chmod(p, e.mode) // WriteFile's mode is masked by umask
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The format of docs/store.md, written out again as plainly as possible,
// so that the tests check HashTree against the document and not against
// itself.
func specFile(exec bool, contents string) [32]byte {
	x := "-"
	if exec {
		x = "x"
	}
	return blake3.Sum256([]byte("hephc-file\x00" + x + contents))
}

func specSymlink(target string) [32]byte {
	return blake3.Sum256([]byte("hephc-symlink\x00" + target))
}

type specEntry struct {
	name string
	hash [32]byte
}

// specDir hashes a directory; entries must be given sorted by name.
func specDir(entries ...specEntry) [32]byte {
	b := []byte("hephc-dir\x00")
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(len(e.name)))
		b = append(b, e.name...)
		b = append(b, e.hash[:]...)
	}
	return blake3.Sum256(b)
}

func hashTree(t testing.TB, root string, opt HashOptions) TreeInfo {
	t.Helper()
	info, err := HashTree(root, opt)
	if err != nil {
		t.Fatalf("HashTree(%s): %v", root, err)
	}
	return info
}

// sampleTree is the tree whose hash docs/store.md works through.
var sampleTree = []entry{
	execFile("bin/hi", "#!/bin/sh\necho hi\n"),
	dir("empty"),
	file("hello", "hello\n"),
	symlink("link", "hello"),
}

// TestHashTreeGolden pins the hash of small trees. The want values were
// computed with the reference b3sum (Debian package b3sum), independently
// of this code, as follows (bash):
//
//	F=$(printf 'hephc-file\0-hello\n' | b3sum --no-names)
//	X=$(printf 'hephc-file\0x#!/bin/sh\necho hi\n' | b3sum --no-names)
//	L=$(printf 'hephc-symlink\0hello' | b3sum --no-names)
//	E=$(printf 'hephc-dir\0' | b3sum --no-names)
//	BIN=$({ printf 'hephc-dir\0\x02hi'; echo $X | xxd -r -p; } | b3sum --no-names)
//	{ printf 'hephc-dir\0\x03bin'; echo $BIN | xxd -r -p
//	  printf '\x05empty'; echo $E | xxd -r -p
//	  printf '\x05hello'; echo $F | xxd -r -p
//	  printf '\x04link'; echo $L | xxd -r -p; } | b3sum --no-names
//
// The spec column computes the same from the spec* functions above.
func TestHashTreeGolden(t *testing.T) {
	binHash := specDir(specEntry{"hi", specFile(true, "#!/bin/sh\necho hi\n")})
	for _, tc := range []struct {
		name    string
		entries []entry // created under root; "." is root itself
		spec    [32]byte
		want    string
	}{
		{
			name:    "file",
			entries: []entry{file(".", "hello\n")},
			spec:    specFile(false, "hello\n"),
			want:    "blake3:bf2b2ec4a72c7ec1c4a3320fa01a9f8263fc89a0dfac05bc79e29b937dff3ab1", // $F
		},
		{
			name:    "symlink",
			entries: []entry{symlink(".", "hello")},
			spec:    specSymlink("hello"),
			want:    "blake3:d5ee161e59b02c3329a45df65cf4be1016829308f145e3e6951c431ba95ab19d", // $L
		},
		{
			name:    "empty-dir",
			entries: []entry{dir(".")},
			spec:    specDir(),
			want:    "blake3:40ceba76823c90d1b561bf7f4d1dcc03b68db37ed99567b06d40818ecedb2788", // $E
		},
		{
			name:    "sample",
			entries: sampleTree,
			spec: specDir(
				specEntry{"bin", binHash},
				specEntry{"empty", specDir()},
				specEntry{"hello", specFile(false, "hello\n")},
				specEntry{"link", specSymlink("hello")},
			),
			want: "blake3:da0ca80e786c8c4621212f32f03fd6e722dfeb655488be3fbf2d6ec079e4d1f1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "out")
			makeTree(t, root, tc.entries...)
			got := hashTree(t, root, HashOptions{}).Hash
			if got.String() != tc.want {
				t.Errorf("HashTree = %s, want %s", got, tc.want)
			}
			if got != Hash(tc.spec) {
				t.Errorf("HashTree = %s, want %s from the spec functions", got, Hash(tc.spec))
			}
		})
	}
}

func TestHashTreeSizeAndFiles(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, sampleTree...)
	info := hashTree(t, root, HashOptions{})
	// "#!/bin/sh\necho hi\n" + "hello\n" + the target "hello".
	if want := int64(18 + 6 + 5); info.Size != want {
		t.Errorf("Size = %d, want %d", info.Size, want)
	}
	if info.Files != 3 {
		t.Errorf("Files = %d, want 3", info.Files)
	}
}

func TestHashTreeCreationOrder(t *testing.T) {
	entries := []entry{
		file("a/x", "1"), file("a/y", "2"), file("b", "3"), dir("c/d"),
		symlink("a/z", "../b"), file("aa", "4"), file("a-", "5"), file("A", "6"),
	}
	var want Hash
	for i := range 5 {
		root := t.TempDir()
		perm := slicesPerm(len(entries), uint64(i))
		shuffled := make([]entry, len(entries))
		for j, k := range perm {
			shuffled[j] = entries[k]
		}
		makeTree(t, root, shuffled...)
		got := hashTree(t, root, HashOptions{}).Hash
		if i == 0 {
			want = got
		} else if got != want {
			t.Errorf("creation order %v: HashTree = %s, want %s", perm, got, want)
		}
	}
}

func slicesPerm(n int, seed uint64) []int {
	if seed == 0 {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		return p
	}
	return rand.New(rand.NewPCG(seed, 0)).Perm(n)
}

func TestHashTreeExecBit(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, file("f", "data"))
	p := filepath.Join(root, "f")
	plain := hashTree(t, root, HashOptions{}).Hash
	for _, mode := range []fs.FileMode{0o744, 0o654, 0o645, 0o511, 0o755} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		got := hashTree(t, root, HashOptions{}).Hash
		if got == plain {
			t.Errorf("mode %o: hash did not change from the non-executable file's", mode)
		}
		if want := Hash(specDir(specEntry{"f", specFile(true, "data")})); got != want {
			t.Errorf("mode %o: HashTree = %s, want %s", mode, got, want)
		}
	}
}

func TestHashTreeIgnoresMetadata(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, sampleTree...)
	want := hashTree(t, root, HashOptions{}).Hash

	old := time.Date(1990, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []string{"hello", "bin/hi", "bin", "empty", "."} {
		if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	for p, mode := range map[string]fs.FileMode{
		"hello": 0o600, "bin/hi": 0o500, "bin": 0o700, "empty": 0o555,
	} {
		if err := os.Chmod(filepath.Join(root, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	if got := hashTree(t, root, HashOptions{}).Hash; got != want {
		t.Errorf("after changing mtimes and permissions: HashTree = %s, want %s", got, want)
	}
}

func TestHashTreeSymlinkIsNotFile(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	makeTree(t, a, file("x", "target"))
	makeTree(t, b, symlink("x", "target"))
	if ha, hb := hashTree(t, a, HashOptions{}).Hash, hashTree(t, b, HashOptions{}).Hash; ha == hb {
		t.Errorf("file and symlink with the same contents hash the same: %s", ha)
	}
	// The exec flag is one fixed byte: "-" + "xab" is not "x" + "ab".
	c, d := t.TempDir(), t.TempDir()
	makeTree(t, c, file("x", "xab"))
	makeTree(t, d, execFile("x", "ab"))
	if hc, hd := hashTree(t, c, HashOptions{}).Hash, hashTree(t, d, HashOptions{}).Hash; hc == hd {
		t.Errorf("file xab and executable file ab hash the same: %s", hc)
	}
}

func TestHashTreeEmptyDirCounts(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	makeTree(t, a, file("f", ""))
	makeTree(t, b, file("f", ""), dir("e"))
	if ha, hb := hashTree(t, a, HashOptions{}).Hash, hashTree(t, b, HashOptions{}).Hash; ha == hb {
		t.Errorf("adding an empty directory did not change the hash %s", ha)
	}
	// An empty file is not an empty directory either.
	c := t.TempDir()
	makeTree(t, c, file("f", ""), file("e", ""))
	if hb, hc := hashTree(t, b, HashOptions{}).Hash, hashTree(t, c, HashOptions{}).Hash; hb == hc {
		t.Errorf("empty file and empty directory hash the same: %s", hb)
	}
}

func TestHashTreeRootSymlinkNotFollowed(t *testing.T) {
	tmp := t.TempDir()
	makeTree(t, tmp, file("real/f", "x"), symlink("link", "real"))
	got := hashTree(t, filepath.Join(tmp, "link"), HashOptions{}).Hash
	if want := Hash(specSymlink("real")); got != want {
		t.Errorf("HashTree(symlink) = %s, want %s (the link's, not its target's)", got, want)
	}
}

func TestHashTreeRejectsSpecialFiles(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, file("a", "x"), file("sub/b", "y"))
	if err := syscall.Mkfifo(filepath.Join(root, "sub", "fifo"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := HashTree(root, HashOptions{})
	if err == nil || !strings.Contains(err.Error(), "sub/fifo") || !strings.Contains(err.Error(), "fifo") {
		t.Errorf("HashTree with a fifo: error %v, want one naming sub/fifo", err)
	}
	_, err = HashTree(filepath.Join(root, "sub", "fifo"), HashOptions{})
	if err == nil {
		t.Errorf("HashTree of a fifo: no error")
	}
}

func TestHashTreeMissing(t *testing.T) {
	if _, err := HashTree(filepath.Join(t.TempDir(), "nope"), HashOptions{}); !os.IsNotExist(errorsUnwrapAll(err)) {
		t.Errorf("HashTree of a missing path: error %v, want not-exist", err)
	}
}

func errorsUnwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// randomTree makes a tree of nfiles files of random sizes below maxSize in
// nested directories, with some symlinks and executables, and returns
// what it wrote, in bytes.
func randomTree(t testing.TB, root string, seed uint64, nfiles, maxSize int) int64 {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	var total int64
	buf := make([]byte, maxSize)
	for i := range nfiles {
		d := filepath.Join(root, fmt.Sprintf("d%02d", r.IntN(16)), fmt.Sprintf("e%02d", r.IntN(16)))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(d, fmt.Sprintf("f%06d", i))
		if i%50 == 49 {
			target := fmt.Sprintf("../f%06d", r.IntN(nfiles))
			if err := os.Symlink(target, name); err != nil {
				t.Fatal(err)
			}
			total += int64(len(target))
			continue
		}
		n := r.IntN(maxSize)
		for j := range buf[:n] {
			buf[j] = byte(r.Uint32())
		}
		mode := fs.FileMode(0o644)
		if i%7 == 0 {
			mode = 0o755
		}
		if err := os.WriteFile(name, buf[:n], mode); err != nil {
			t.Fatal(err)
		}
		total += int64(n)
	}
	return total
}

func TestHashTreeDeterministicAcrossWorkers(t *testing.T) {
	root := t.TempDir()
	size := randomTree(t, root, 1, 600, 3*readBufSize/100)
	// One big file so that several reads per file happen too.
	big := make([]byte, 3*readBufSize+12345)
	for i := range big {
		big[i] = byte(i * 7)
	}
	const mark = "a mark that straddles two reads"
	copy(big[readBufSize-10:], mark)
	if err := os.WriteFile(filepath.Join(root, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	size += int64(len(big))
	makeTree(t, root, symlink("d03/to-ref", "/heph/store/target"))
	size += int64(len("/heph/store/target"))

	scan := &streamScanner{}
	want := hashTree(t, root, HashOptions{Workers: 1, Scan: scan})
	if want.Size != size {
		t.Errorf("Size = %d, want %d", want.Size, size)
	}
	wantStreams := scan.sorted()
	if !slices.Contains(wantStreams, string(big)) || !slices.Contains(wantStreams, "/heph/store/target") || !slices.Contains(wantStreams, "to-ref") {
		t.Errorf("the scanner was not shown the big file, the symlink's target and its name as streams of their own")
	}
	for _, w := range []int{2, 8, 0} {
		scan := &streamScanner{}
		got := hashTree(t, root, HashOptions{Workers: w, Scan: scan})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Workers %d: got %+v, want %+v (as with Workers 1)", w, got, want)
		}
		if !slices.Equal(scan.sorted(), wantStreams) {
			t.Errorf("Workers %d: the scanner was shown other streams than with Workers 1", w)
		}
	}
}

// streamScanner records every stream HashTree shows it.
type streamScanner struct {
	mu      sync.Mutex
	streams []string
}

func (s *streamScanner) NewMatcher() Matcher { return &streamMatcher{s: s} }

// sorted returns the streams shown, sorted.
func (s *streamScanner) sorted() []string { return slices.Sorted(slices.Values(s.streams)) }

type streamMatcher struct {
	s   *streamScanner
	cur []byte
}

func (m *streamMatcher) Write(p []byte) (int, error) { m.cur = append(m.cur, p...); return len(p), nil }

func (m *streamMatcher) EndStream() {
	m.s.mu.Lock()
	m.s.streams = append(m.s.streams, string(m.cur))
	m.s.mu.Unlock()
	m.cur = m.cur[:0]
}

func TestHashTreeScansEveryStream(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, sampleTree...)
	scan := &streamScanner{}
	hashTree(t, root, HashOptions{Scan: scan})
	want := []string{"#!/bin/sh\necho hi\n", "bin", "empty", "hello", "hello", "hello\n", "hi", "link"}
	if got := scan.sorted(); !slices.Equal(got, want) {
		t.Errorf("streams shown: got %q, want %q (contents, the symlink's target, every name, each on its own)", got, want)
	}
}

func TestCanonicalize(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "out")
	outside := filepath.Join(tmp, "outside")
	makeTree(t, tmp, file("outside", "not ours"))
	makeTree(t, root,
		file("plain", "a"),
		entry{"owner-exec", 0o744, "b"},
		entry{"other-exec", 0o641, "c"},
		entry{"setuid", fs.ModeSetuid | fs.ModeSetgid | 0o755, "d"},
		entry{"private", 0o600, "e"},
		dir("sub/deeper"),
		file("sub/deeper/f", "f"),
		symlink("sub/link", "../plain"),
		symlink("escape", outside),
	)
	hashBefore := hashTree(t, root, HashOptions{}).Hash
	// Directory modes that MkdirAll does not set.
	for p, m := range map[string]fs.FileMode{
		"sub": fs.ModeSticky | fs.ModeSetgid | 0o700, "sub/deeper": 0o300, // not even readable
	} {
		if err := os.Chmod(filepath.Join(root, p), m); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { RemoveTree(root) })
	outsideBefore, err := os.Stat(outside)
	if err != nil {
		t.Fatal(err)
	}

	if err := Canonicalize(root); err != nil {
		t.Fatalf("Canonicalize: %v", err)
	}

	want := map[string]fs.FileMode{
		".":            fs.ModeDir | 0o555,
		"plain":        0o444,
		"owner-exec":   0o555,
		"other-exec":   0o555,
		"setuid":       0o555,
		"private":      0o444,
		"sub":          fs.ModeDir | 0o555,
		"sub/deeper":   fs.ModeDir | 0o555,
		"sub/deeper/f": 0o444,
		"sub/link":     fs.ModeSymlink,
		"escape":       fs.ModeSymlink,
	}
	seen := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		seen++
		w, ok := want[rel]
		if !ok {
			t.Errorf("unexpected entry %s", rel)
		}
		got := fi.Mode()
		if got.Type() == fs.ModeSymlink {
			got = fs.ModeSymlink // a symlink's permissions mean nothing
		}
		if got != w {
			t.Errorf("%s: mode %v, want %v", rel, got, w)
		}
		if mt := fi.ModTime(); !mt.Equal(time.Unix(1, 0)) {
			t.Errorf("%s: mtime %v, want Unix time 1", rel, mt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Errorf("saw %d entries, want %d", seen, len(want))
	}
	outsideAfter, err := os.Stat(outside)
	if err != nil {
		t.Fatal(err)
	}
	if outsideAfter.Mode() != outsideBefore.Mode() || !outsideAfter.ModTime().Equal(outsideBefore.ModTime()) {
		t.Errorf("Canonicalize followed a symlink out of the tree: %s went from %v %v to %v %v", outside,
			outsideBefore.Mode(), outsideBefore.ModTime(), outsideAfter.Mode(), outsideAfter.ModTime())
	}
	if got := hashTree(t, root, HashOptions{}).Hash; got != hashBefore {
		t.Errorf("Canonicalize changed the hash from %s to %s", hashBefore, got)
	}
	// Canonicalizing again changes nothing and does not fail on the
	// read-only tree it made.
	if err := Canonicalize(root); err != nil {
		t.Errorf("Canonicalize again: %v", err)
	}
}

func TestCanonicalizeSingleFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	makeTree(t, p, entry{".", fs.ModeSetuid | 0o711, "x"})
	if err := Canonicalize(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o555 || !fi.ModTime().Equal(time.Unix(1, 0)) {
		t.Errorf("got mode %v mtime %v, want -r-xr-xr-x and Unix time 1", fi.Mode(), fi.ModTime())
	}
}

func TestCanonicalizeRejectsSpecialFiles(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, file("a", "x"), dir("sub"))
	if err := syscall.Mkfifo(filepath.Join(root, "sub", "fifo"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	t.Cleanup(func() { RemoveTree(root) })
	err := Canonicalize(root)
	if err == nil || !strings.Contains(err.Error(), "sub/fifo") {
		t.Errorf("Canonicalize with a fifo: error %v, want one naming sub/fifo", err)
	}
}

func TestRemoveTree(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "tree")
	keep := filepath.Join(tmp, "keep")
	makeTree(t, keep, file("precious", "do not delete"), dir("d"))
	makeTree(t, root,
		file("a", "1"), execFile("sub/b", "2"), dir("sub/empty"), file("sub/deep/c", "3"),
		symlink("to-keep", keep), symlink("sub/to-precious", filepath.Join(keep, "precious")),
		dir("locked/inner"), file("locked/inner/x", "4"),
	)
	// Read-only throughout, as a store path is; one directory not even
	// readable, as a failed build may leave one.
	if err := Canonicalize(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "locked"), 0); err != nil {
		t.Fatal(err)
	}
	// So is what the symlinks point to: RemoveTree must not make it writable.
	if err := os.Chmod(keep, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(keep, 0o755) })

	if err := RemoveTree(root); err != nil {
		t.Fatalf("RemoveTree: %v", err)
	}
	if _, err := os.Lstat(root); !os.IsNotExist(err) {
		t.Errorf("after RemoveTree, Lstat: %v, want not-exist", err)
	}
	if b, err := os.ReadFile(filepath.Join(keep, "precious")); err != nil || string(b) != "do not delete" {
		t.Errorf("a file a symlink pointed to: %q, %v", b, err)
	}
	if fi, err := os.Stat(keep); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("the directory a symlink pointed to: %v, %v; want it untouched, 0555", fi.Mode(), err)
	}

	for _, p := range []string{".", "..", "/", tmp + "/.", tmp + "/.."} {
		if err := RemoveTree(p); err == nil {
			t.Errorf("RemoveTree(%q): no error", p)
		}
	}

	// Missing is fine; a symlink is removed, not followed.
	if err := RemoveTree(root); err != nil {
		t.Errorf("RemoveTree of a missing path: %v", err)
	}
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(keep, link); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTree(link); err != nil {
		t.Errorf("RemoveTree(symlink): %v", err)
	}
	if _, err := os.Stat(filepath.Join(keep, "precious")); err != nil {
		t.Errorf("RemoveTree(symlink) followed it: %v", err)
	}
}
