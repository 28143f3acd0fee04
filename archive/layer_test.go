package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"hephc.dev/hephc/store"
)

var layerPath = func() store.Path {
	p, err := store.ParsePath("/heph/store/0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghij0-x")
	if err != nil {
		panic(err)
	}
	return p
}()

const root = "heph/store/0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghij0-x"

// entry is one tar entry of a hand-made layer.
type entry struct {
	hdr  tar.Header
	body string
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o555}}
}
func file(name, body string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: int64(len(body))}, body: body}
}

func tarOf(t testing.TB, es ...entry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return b.Bytes()
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func hashOf(b []byte) v1.Hash {
	h := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h[:])}
}

// readTar reads the tar t as a layer whose digests all match, so that
// only its entries decide.
func readTar(t testing.TB, tarBytes []byte, size int64, lim LayerLimits) error {
	z := gz(tarBytes)
	dst := filepath.Join(t.TempDir(), "out")
	return ReadLayer(bytes.NewReader(z), v1.Descriptor{Size: int64(len(z)), Digest: hashOf(z)}, hashOf(tarBytes), layerPath, size, dst, lim)
}

var testLimits = LayerLimits{MaxBytes: 1 << 20, MaxEntries: 100}

func TestReadLayerAccepts(t *testing.T) {
	b := tarOf(t, dir(root), dir(root+"/bin"), entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: root + "/bin/x", Mode: 0o555, Size: 2}, body: "hi"},
		entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: root + "/l", Linkname: "/heph/store/elsewhere", Mode: 0o777}})
	z := gz(b)
	dst := filepath.Join(t.TempDir(), "out")
	if err := ReadLayer(bytes.NewReader(z), v1.Descriptor{Size: int64(len(z)), Digest: hashOf(z)}, hashOf(b), layerPath, 100, dst, testLimits); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dst, "bin", "x"))
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("bin/x: %v, %v", fi, err)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "l")); l != "/heph/store/elsewhere" {
		t.Fatalf("l -> %q", l)
	}
}

func TestReadLayerRefusesHostile(t *testing.T) {
	reg := func(name string, mode int64) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: 1}, body: "x"}
	}
	cases := []struct {
		name string
		es   []entry
		want string
	}{
		{"traversal", []entry{dir(root), file(root+"/../../etc/passwd", "x")}, ". or .. element"},
		{"traversal at the root", []entry{dir(root + "/..")}, ". or .. element"},
		{"absolute", []entry{dir("/" + root)}, "outside"},
		{"outside its path", []entry{dir(root), file("heph/store/other/x", "x")}, "outside"},
		{"another store path", []entry{dir(root + "-evil")}, "outside"},
		{"setuid", []entry{dir(root), reg(root+"/su", 0o4555)}, "setuid"},
		{"setgid", []entry{dir(root), reg(root+"/sg", 0o2555)}, "setgid"},
		{"sticky", []entry{dir(root), {hdr: tar.Header{Typeflag: tar.TypeDir, Name: root + "/tmp/", Mode: 0o1777}}}, "sticky"},
		{"char device", []entry{dir(root), {hdr: tar.Header{Typeflag: tar.TypeChar, Name: root + "/null", Devmajor: 1, Devminor: 3}}}, "device"},
		{"block device", []entry{dir(root), {hdr: tar.Header{Typeflag: tar.TypeBlock, Name: root + "/sda", Devmajor: 8}}}, "device"},
		{"fifo", []entry{dir(root), {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: root + "/p"}}}, "fifo"},
		{"hard link", []entry{dir(root), file(root+"/a", "x"), {hdr: tar.Header{Typeflag: tar.TypeLink, Name: root + "/b", Linkname: root + "/a"}}}, "hard link"},
		{"hard link out", []entry{dir(root), {hdr: tar.Header{Typeflag: tar.TypeLink, Name: root + "/shadow", Linkname: "/etc/shadow"}}}, "hard link"},
		{"whiteout", []entry{dir(root), file(root+"/.wh.bin", "")}, "whiteout"},
		{"opaque whiteout", []entry{dir(root), dir(root + "/d"), file(root+"/d/.wh..wh..opq", "")}, "whiteout"},
		{"through a symlink", []entry{dir(root), {hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: root + "/l", Linkname: "/etc"}}, file(root+"/l/passwd", "x")}, "not an earlier entry"},
		{"parent not an entry", []entry{dir(root), file(root+"/a/b", "x")}, "not an earlier entry"},
		{"root not first", []entry{file(root+"/a", "x"), dir(root)}, "must come first"},
		{"twice", []entry{dir(root), file(root+"/a", "x"), file(root+"/a", "y")}, "second entry"},
		{"below a file root", []entry{file(root, "x"), file(root+"/a", "y")}, "nothing can be below"},
		{"xattr", []entry{dir(root), {hdr: tar.Header{Typeflag: tar.TypeReg, Name: root + "/cap", Size: 1, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "x"}}, body: "x"}}, "extended header"},
		{"more than announced", []entry{dir(root), file(root+"/big", strings.Repeat("x", 200))}, "more bytes than the 100 announced"},
		{"empty", nil, "no entries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := readTar(t, tarOf(t, tc.es...), 100, testLimits)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !IsRefused(err) {
				t.Fatalf("got %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
}

func TestReadLayerBomb(t *testing.T) {
	// 64 MiB of zeros compress to about 64 KiB; the limit is 1 MiB.
	body := strings.Repeat("\x00", 64<<20)
	b := tarOf(t, dir(root), file(root+"/zeros", body))
	err := readTar(t, b, int64(len(body)), testLimits)
	if err == nil || !strings.Contains(err.Error(), "decompression bomb") {
		t.Fatalf("got %v", err)
	}
	many := []entry{dir(root)}
	for i := range 200 {
		many = append(many, file(root+"/f"+strings.Repeat("x", i), ""))
	}
	if err := readTar(t, tarOf(t, many...), 0, testLimits); err == nil || !strings.Contains(err.Error(), "more than 100 entries") {
		t.Fatalf("got %v", err)
	}
}

func TestReadLayerDigests(t *testing.T) {
	b := tarOf(t, dir(root), file(root+"/a", "x"))
	z := gz(b)
	read := func(z []byte, d v1.Descriptor, diff v1.Hash) error {
		return ReadLayer(bytes.NewReader(z), d, diff, layerPath, 10, filepath.Join(t.TempDir(), "out"), testLimits)
	}
	good := v1.Descriptor{Size: int64(len(z)), Digest: hashOf(z)}
	if err := read(z, good, hashOf(b)); err != nil {
		t.Fatal(err)
	}
	other := hashOf([]byte("other"))
	for name, tc := range map[string]struct {
		z    []byte
		d    v1.Descriptor
		diff v1.Hash
		want string
	}{
		"digest":         {z, v1.Descriptor{Size: good.Size, Digest: other}, hashOf(b), "not to their digest"},
		"diff id":        {z, good, other, "not to the diff id"},
		"longer":         {append(append([]byte(nil), z...), 0), good, hashOf(b), "refused"},
		"shorter":        {z[:len(z)-4], v1.Descriptor{Size: good.Size - 4, Digest: hashOf(z[:len(z)-4])}, hashOf(b), ""},
		"size":           {z, v1.Descriptor{Size: good.Size + 10, Digest: good.Digest}, hashOf(b), "the manifest says"},
		"not gzip":       {b, v1.Descriptor{Size: int64(len(b)), Digest: hashOf(b)}, hashOf(b), "not gzip"},
		"two gzip parts": {append(append([]byte(nil), z...), gz([]byte("more"))...), v1.Descriptor{Size: int64(len(z)) + int64(len(gz([]byte("more")))), Digest: hashOf(append(append([]byte(nil), z...), gz([]byte("more"))...))}, hashOf(b), "after the gzip stream"},
	} {
		err := read(tc.z, tc.d, tc.diff)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error saying %q", name, err, tc.want)
		}
	}
}

// FuzzReadLayer feeds the layer reader arbitrary tar streams whose
// digests match: it must never panic, never write outside its
// destination, and leave only directories, regular files and symlinks
// without special bits.
func FuzzReadLayer(f *testing.F) {
	f.Add(tarOf(f, dir(root), dir(root+"/bin"), file(root+"/bin/x", "hi"), entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: root + "/l", Linkname: "bin"}}))
	f.Add(tarOf(f, file(root, "just a file")))
	f.Add(tarOf(f, dir(root), file(root+"/../x", "x")))
	f.Add(tarOf(f, dir(root), entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: root + "/b", Linkname: root}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		base := t.TempDir()
		dst := filepath.Join(base, "sub", "out")
		os.Mkdir(filepath.Join(base, "sub"), 0o755)
		z := gz(b)
		err := ReadLayer(bytes.NewReader(z), v1.Descriptor{Size: int64(len(z)), Digest: hashOf(z)}, hashOf(b), layerPath, 1<<16, dst, LayerLimits{MaxBytes: 1 << 20, MaxEntries: 1000})
		// Nothing outside dst, whatever happened.
		entries, _ := os.ReadDir(base)
		if len(entries) != 1 {
			t.Fatalf("wrote beside its destination: %v", entries)
		}
		sub, _ := os.ReadDir(filepath.Join(base, "sub"))
		if len(sub) > 1 || len(sub) == 1 && sub[0].Name() != "out" {
			t.Fatalf("wrote beside its destination: %v", sub)
		}
		if err != nil {
			return
		}
		filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Lstat(p)
			if m := fi.Mode(); m&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky|os.ModeDevice|os.ModeNamedPipe|os.ModeSocket) != 0 {
				t.Fatalf("%s: mode %v", p, m)
			}
			if strings.HasPrefix(d.Name(), ".wh.") {
				t.Fatalf("%s: a whiteout", p)
			}
			return nil
		})
	})
}
