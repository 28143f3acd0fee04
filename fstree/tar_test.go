package fstree

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeTar(t *testing.T, root, name string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteTar(&b, root, name); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestWriteTarReproducible(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	makeTree(t, a, sampleTree...)
	// The same tree made in another order, with other times, modes and
	// owners, and canonical.
	b := filepath.Join(t.TempDir(), "b")
	makeTree(t, b, symlink("link", "hello"), file("hello", "hello\n"), dir("empty"), entry{"bin/hi", 0o700, "#!/bin/sh\necho hi\n"})
	old := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
	os.Chtimes(filepath.Join(b, "hello"), old, old)
	os.Lchown(filepath.Join(b, "hello"), 123, 456)
	if err := Canonicalize(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveTree(b) })
	ta, tb := writeTar(t, a, "x"), writeTar(t, b, "x")
	if !bytes.Equal(ta, tb) {
		t.Fatalf("two trees with one hash gave different tars")
	}

	tr := tar.NewReader(bytes.NewReader(ta))
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.ModTime.Unix() != 0 || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: mtime %v, owner %d:%d (%q:%q); want all zero", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		want := map[byte]int64{tar.TypeDir: 0o555, tar.TypeSymlink: 0o777, tar.TypeReg: 0o444}[hdr.Typeflag]
		if hdr.Name == "x/bin/hi" {
			want = 0o555
		}
		if hdr.Mode != want {
			t.Errorf("%s: mode %o, want %o", hdr.Name, hdr.Mode, want)
		}
	}
	if got, want := names, []string{"x/", "x/bin/", "x/bin/hi", "x/empty/", "x/hello", "x/link"}; !equalStrings(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}

	// Any change to what the hash covers changes the tar.
	c := filepath.Join(t.TempDir(), "c")
	makeTree(t, c, sampleTree...)
	os.Chmod(filepath.Join(c, "hello"), 0o744)
	if bytes.Equal(writeTar(t, c, "x"), ta) {
		t.Errorf("an exec bit set did not change the tar")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestExtractTarRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"tree", sampleTree},
		{"file", []entry{execFile(".", "#!/bin/sh\n")}},
		{"symlink", []entry{symlink(".", "elsewhere")}},
		{"empty", []entry{dir(".")}},
	} {
		src := filepath.Join(tmp, tc.name)
		makeTree(t, src, tc.entries...)
		info := hashTree(t, src, HashOptions{})
		dst := filepath.Join(tmp, tc.name+"-out")
		if err := ExtractTar(bytes.NewReader(writeTar(t, src, "p")), dst, "p", info.Size); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := hashTree(t, dst, HashOptions{}); got != info {
			t.Errorf("%s: extracted tree %+v, want %+v", tc.name, got, info)
		}
		// One byte fewer allowed: refused.
		if info.Size > 0 {
			err := ExtractTar(bytes.NewReader(writeTar(t, src, "p")), dst+"-short", "p", info.Size-1)
			if !errors.Is(err, ErrRefused) {
				t.Errorf("%s: a limit one byte short: %v, want a refusal", tc.name, err)
			}
		}
	}
}

// hostileTar writes entries as given, whatever they say.
func hostileTar(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 1
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return b.Bytes()
}

func TestExtractTarRefusesHostile(t *testing.T) {
	tmp := t.TempDir()
	outside := filepath.Join(tmp, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := func(name string) *tar.Header {
		return &tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o555}
	}
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o444} }
	for _, tc := range []struct {
		name string
		hdrs []*tar.Header
	}{
		{"dot-dot", []*tar.Header{dir("p"), reg("p/../escape")}},
		{"dot-dot-root", []*tar.Header{dir("p"), reg("p/../../outside/x")}},
		{"absolute", []*tar.Header{dir("p"), reg("/" + outside + "/x")}},
		{"other-root", []*tar.Header{dir("p"), reg("q/x")}},
		{"prefix-only", []*tar.Header{dir("p"), reg("pq")}},
		{"through-symlink", []*tar.Header{dir("p"), {Name: "p/l", Typeflag: tar.TypeSymlink, Linkname: outside}, reg("p/l/x")}},
		{"dir-over-symlink", []*tar.Header{dir("p"), {Name: "p/l", Typeflag: tar.TypeSymlink, Linkname: outside}, dir("p/l"), reg("p/l/x")}},
		{"hard-link", []*tar.Header{dir("p"), {Name: "p/h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}}},
		{"device", []*tar.Header{dir("p"), {Name: "p/d", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}},
		{"fifo", []*tar.Header{dir("p"), {Name: "p/f", Typeflag: tar.TypeFifo}}},
		{"twice", []*tar.Header{dir("p"), reg("p/x"), reg("p/x")}},
		{"no-parent", []*tar.Header{dir("p"), reg("p/a/x")}},
		{"parent-is-file", []*tar.Header{dir("p"), reg("p/a"), reg("p/a/x")}},
		{"root-not-first", []*tar.Header{reg("p/x"), dir("p")}},
		{"root-twice", []*tar.Header{dir("p"), dir("p")}},
		{"after-a-file-root", []*tar.Header{reg("p"), reg("p/x")}},
		{"empty-element", []*tar.Header{dir("p"), reg("p//x")}},
		{"dot", []*tar.Header{dir("p"), reg("p/./x")}},
		{"too-big", []*tar.Header{dir("p"), {Name: "p/x", Typeflag: tar.TypeReg, Size: 1 << 20}}},
		{"nothing", nil},
		{"setuid", []*tar.Header{dir("p"), {Name: "p/su", Typeflag: tar.TypeReg, Mode: 0o4555}}},
		{"setgid", []*tar.Header{dir("p"), {Name: "p/sg", Typeflag: tar.TypeReg, Mode: 0o2555}}},
		{"sticky", []*tar.Header{dir("p"), {Name: "p/tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}}},
		{"whiteout", []*tar.Header{dir("p"), reg("p/.wh.x")}},
		{"opaque-whiteout", []*tar.Header{dir("p"), dir("p/d"), reg("p/d/.wh..wh..opq")}},
		{"xattr", []*tar.Header{dir("p"), {Name: "p/cap", Typeflag: tar.TypeReg, Mode: 0o555, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "x"}}}},
		{"long-name", []*tar.Header{dir("p"), reg("p/" + strings.Repeat("a", 256))}},
		{"empty-symlink", []*tar.Header{dir("p"), {Name: "p/l", Typeflag: tar.TypeSymlink}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(tmp, tc.name)
			err := ExtractTar(bytes.NewReader(hostileTar(t, tc.hdrs...)), dst, "p", 1000)
			if !errors.Is(err, ErrRefused) && !errors.Is(err, os.ErrExist) {
				t.Fatalf("got %v, want a refusal", err)
			}
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Fatalf("wrote %s outside the destination", entries[0].Name())
			}
			if _, err := os.Lstat(filepath.Join(tmp, "escape")); err == nil {
				t.Fatalf("wrote beside the destination")
			}
		})
	}
}

func TestExtractTarLimits(t *testing.T) {
	tmp := t.TempDir()
	hdrs := []*tar.Header{{Name: "p/", Typeflag: tar.TypeDir, Mode: 0o555}}
	for i := range 10 {
		hdrs = append(hdrs, &tar.Header{Name: fmt.Sprintf("p/f%d", i), Typeflag: tar.TypeReg, Mode: 0o444})
	}
	b := hostileTar(t, hdrs...)
	if err := ExtractTarLimits(bytes.NewReader(b), filepath.Join(tmp, "ok"), "p", 10, 11); err != nil {
		t.Fatalf("11 entries, limit 11: %v", err)
	}
	err := ExtractTarLimits(bytes.NewReader(b), filepath.Join(tmp, "many"), "p", 10, 10)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "more than 10 entries") {
		t.Fatalf("11 entries, limit 10: got %v, want a refusal", err)
	}
	// A file cut short: the stream ends inside it.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "p", Typeflag: tar.TypeReg, Mode: 0o444, Size: 100})
	tw.Write([]byte("short"))
	tw.Flush()
	err = ExtractTar(bytes.NewReader(tb.Bytes()[:512+5]), filepath.Join(tmp, "short"), "p", 100)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated: got %v, want a refusal", err)
	}
}
