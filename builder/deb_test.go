package builder

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// TestAptMirrors: one-line sources.list entries (options, comments,
// deb-src skipped) and deb822 .sources stanzas (Enabled: no skipped),
// http and https only, each once, files in order.
func TestAptMirrors(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "sources.list"), []byte("# a comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\ndeb cdrom:[Debian]/ bookworm main\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte("Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nTypes: deb deb-src\nURIs: https://security.example/debian-security http://mirror.example/debian\nSuites: bookworm-security\n\nTypes: deb\nEnabled: no\nURIs: http://off.example/debian\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sources.list.d", "x.list.disabled"), []byte("deb http://disabled.example/ x main\n"), 0o644)
	got, err := AptMirrors(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://mirror.example/debian", "http://deb.debian.org/debian", "https://security.example/debian-security"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPoolPath(t *testing.T) {
	for a, want := range map[debAttrs]string{
		{Package: "systemd-boot-efi", Version: "252.39-1~deb12u2", Arch: "amd64", Source: "systemd", Component: "main"}: "pool/main/s/systemd/systemd-boot-efi_252.39-1~deb12u2_amd64.deb",
		{Package: "libc6", Version: "2.36-9", Arch: "amd64", Source: "glibc", Component: "main"}:                        "pool/main/g/glibc/libc6_2.36-9_amd64.deb",
		{Package: "libfoo1", Version: "1:2.0-1", Arch: "all", Source: "libfoo", Component: "contrib"}:                   "pool/contrib/libf/libfoo/libfoo1_2.0-1_all.deb",
	} {
		if got := a.PoolPath(); got != want {
			t.Errorf("%s: got %s, want %s", a.Package, got, want)
		}
	}
}

// deb makes a .deb: debian-binary, control.tar.xz, data.tar.xz of entries.
func deb(t *testing.T, entries []*tar.Header, bodies map[string]string) []byte {
	t.Helper()
	var data bytes.Buffer
	xw, _ := xz.NewWriter(&data)
	tw := tar.NewWriter(xw)
	for _, h := range entries {
		h.Size = int64(len(bodies[h.Name]))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(bodies[h.Name]))
	}
	tw.Close()
	xw.Close()
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		body []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.xz", []byte("ctl")}, {"data.tar.xz", data.Bytes()}} {
		fmt.Fprintf(&b, "%-16s%-12s%-6s%-6s%-8s%-10d`\n", m.name, "0", "0", "0", "100644", len(m.body))
		b.Write(m.body)
		if len(m.body)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// TestUnpackDeb: files, modes, symbolic links and hard links of
// data.tar.xz land in the directory; a name leaving it and a device are
// refused.
func TestUnpackDeb(t *testing.T) {
	d := deb(t, []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/lib/systemd/boot/efi/systemd-bootx64.efi", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "./usr/bin/tool", Typeflag: tar.TypeReg, Mode: 0o755},
		{Name: "./usr/bin/alias", Typeflag: tar.TypeSymlink, Linkname: "tool"},
		{Name: "./usr/bin/hard", Typeflag: tar.TypeLink, Linkname: "./usr/bin/tool"},
	}, map[string]string{"./usr/lib/systemd/boot/efi/systemd-bootx64.efi": "MZ", "./usr/bin/tool": "#!/bin/sh\n"})
	dir := filepath.Join(t.TempDir(), "out")
	n, err := UnpackDeb(bytes.NewReader(d), dir)
	if err != nil || n != 4 {
		t.Fatalf("%d files, %v", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "usr/lib/systemd/boot/efi/systemd-bootx64.efi")); string(b) != "MZ" {
		t.Errorf("the loader: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "usr/bin/tool")); fi == nil || fi.Mode().Perm()&0o100 == 0 {
		t.Error("tool lost its executable bit")
	}
	if l, _ := os.Readlink(filepath.Join(dir, "usr/bin/alias")); l != "tool" {
		t.Errorf("alias -> %q", l)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "usr/bin/hard")); string(b) != "#!/bin/sh\n" {
		t.Errorf("hard: %q", b)
	}
	for name, h := range map[string]*tar.Header{
		"leaves the package":       {Name: "../../etc/passwd", Typeflag: tar.TypeReg},
		"of a kind a package must": {Name: "./dev/sda", Typeflag: tar.TypeBlock},
	} {
		_, err := UnpackDeb(bytes.NewReader(deb(t, []*tar.Header{h}, nil)), filepath.Join(t.TempDir(), "x"))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", h.Name, err)
		}
	}
	if _, err := UnpackDeb(strings.NewReader("not a deb"), t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a .deb") {
		t.Errorf("not a deb: %v", err)
	}
}
