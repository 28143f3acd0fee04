package archive

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLayoutTarRoundTrip(t *testing.T) {
	src := newStore(t)
	ps := sample(t, src)
	signAll(t, src, ps, "alice", "bob")
	dir := export(t, src, ps)
	var a, b bytes.Buffer
	if err := WriteLayoutTar(&a, dir); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayoutTar(&b, export(t, src, ps)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two archives of the same paths differ")
	}
	dst := t.TempDir()
	if err := ExtractLayoutTar(bytes.NewReader(a.Bytes()), dst, 1<<30); err != nil {
		t.Fatal(err)
	}
	res, err := importInto(t, newStore(t), dst, policy(t, 2))
	if err != nil || len(res.Imported) != 2 {
		t.Fatalf("import from the extracted archive: %+v, %v", res, err)
	}
}

func TestExtractLayoutTarRefuses(t *testing.T) {
	file := func(name, body string) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o444}, body: body}
	}
	blob := "blobs/sha256/" + strings.Repeat("a", 64)
	base := []entry{file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`), file("index.json", "{}")}
	for name, tc := range map[string]struct {
		es   []entry
		want string
	}{
		"traversal":    {append(base, file("blobs/sha256/../../../x", "x")), "not a file of an OCI layout"},
		"absolute":     {append(base, file("/etc/passwd", "x")), "not a file of an OCI layout"},
		"other file":   {append(base, file("blobs/sha512/x", "x")), "not a file of an OCI layout"},
		"symlink":      {append(base, entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: blob, Linkname: "/etc/passwd"}}), "only the regular files"},
		"hard link":    {append(base, entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: blob, Linkname: "index.json"}}), "only the regular files"},
		"device":       {append(base, entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: blob}}), "only the regular files"},
		"twice":        {append(base, file("index.json", "{}")), "twice"},
		"too big":      {append(base, file(blob, strings.Repeat("x", 2000))), "more than"},
		"not a layout": {[]entry{file(blob, "x")}, "no oci-layout"},
	} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			err := ExtractLayoutTar(bytes.NewReader(tarOf(t, tc.es...)), dst, 1000)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !IsRefused(err) {
				t.Fatalf("got %v, want a refusal saying %q", err, tc.want)
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(dst), "x")); err == nil {
				t.Fatal("wrote outside the destination")
			}
		})
	}
}
