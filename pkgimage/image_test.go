package pkgimage

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/validate"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/store"
)

// The fixtures archive, registry and pkgimage tests share.
var newStore = pathtest.NewStore
var install = pathtest.Install

// chain makes n paths, each referring to the one before and holding i KiB.
func chain(t testing.TB, s *store.Store, n int) []store.Path {
	var ps []store.Path
	for i := range n {
		files := map[string]string{"data": strings.Repeat("x", (i%4+1)*1024) + string(rune('a'+i))}
		var refs []store.Path
		if i > 0 {
			files["prev"] = ps[i-1].String()
			refs = append(refs, ps[i-1])
		}
		ps = append(ps, install(t, s, "p"+string(rune('a'+i)), files, refs...))
	}
	return ps
}

// One path, one layer: the archive's layer of it, the blob a binary cache
// holds; dependencies first; PATH and Cmd into the package's bin/; a
// valid image by go-containerregistry's checks.
func TestImageLayersArePathLayers(t *testing.T) {
	s := newStore(t)
	lib := install(t, s, "lib", map[string]string{"lib/libx.so": "ELF", "share/": ""})
	app := install(t, s, "app", map[string]string{"bin/app*": "#!/bin/sh\n# " + lib.String() + "\n"}, lib)
	im, err := Write(context.Background(), s, app, filepath.Join(t.TempDir(), "oci"), Options{Version: "1.0", Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Layers) != 2 || im.Layers[0].Paths[0] != lib || im.Layers[1].Paths[0] != app {
		t.Fatalf("layers %+v, want lib then app", im.Layers)
	}
	for _, l := range im.Layers {
		f, err := os.Create(filepath.Join(t.TempDir(), "layer"))
		if err != nil {
			t.Fatal(err)
		}
		li, err := archive.WriteLayer(f, s.Physical(l.Paths[0]), l.Paths[0])
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if li.Digest != l.Digest || li.DiffID != l.DiffID {
			t.Errorf("%s: layer %s, the archive's %s", l.Paths[0], l.Digest, li.Digest)
		}
	}
	if got, want := im.Config.Config.Env, []string{"PATH=" + app.String() + "/bin"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Env %v, want %v", got, want)
	}
	if got := im.Config.Config.Cmd; len(got) != 1 || got[0] != app.String()+"/bin/app" {
		t.Errorf("Cmd %v", got)
	}
	if im.Config.Config.Labels["org.opencontainers.image.version"] != "1.0" || im.Config.Config.Labels["org.opencontainers.image.title"] != "app" {
		t.Errorf("labels %v", im.Config.Config.Labels)
	}
	img, err := im.Img()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
}

// The same closure gives the same image, to the byte, in another store.
func TestImageSameInTwoStores(t *testing.T) {
	var digests []string
	for range 2 {
		s := newStore(t)
		ps := chain(t, s, 5)
		im, err := Write(context.Background(), s, ps[4], filepath.Join(t.TempDir(), "oci"), Options{MaxLayers: 3})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, im.Manifest.Digest.String())
	}
	if digests[0] != digests[1] {
		t.Fatalf("two stores: %s and %s", digests[0], digests[1])
	}
}

// Above the layer limit, the largest paths keep a layer each and the
// others share the last one, in dependency order.
func TestImageMergesSmallPaths(t *testing.T) {
	s := newStore(t)
	ps := chain(t, s, 6) // sizes 1, 2, 3, 4, 1, 2 KiB (and a little)
	im, err := Write(context.Background(), s, ps[5], filepath.Join(t.TempDir(), "oci"), Options{MaxLayers: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range im.Layers {
		var names []string
		for _, p := range l.Paths {
			names = append(names, p.Name)
		}
		got = append(got, strings.Join(names, "+"))
	}
	if want := "pc pd pa+pb+pe+pf"; strings.Join(got, " ") != want {
		t.Fatalf("layers %q, want %q", strings.Join(got, " "), want)
	}
	img, err := im.Img()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	// Unpacked, the layers give every path of the closure.
	root := unpack(t, im)
	for _, p := range ps {
		if _, err := os.Stat(filepath.Join(root, "heph", "store", p.Base(), "data")); err != nil {
			t.Error(err)
		}
	}
}

// unpack extracts the image's layers in order into a new directory with
// GNU tar, as a container runtime applies them, and returns it.
func unpack(t testing.TB, im *Image) string {
	t.Helper()
	root := t.TempDir()
	for _, l := range im.Layers {
		blob := filepath.Join(im.Dir, "blobs", "sha256", l.Digest.Hex)
		if out, err := exec.Command("tar", "-xzf", blob, "-C", root).CombinedOutput(); err != nil {
			t.Fatalf("tar -xzf %s: %v\n%s", blob, err, out)
		}
	}
	return root
}

// A package's program runs from its image unpacked, in a chroot: what a
// container runtime would run.
func TestImageRunsInChroot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("HEPHC_E2E") == "1" {
			t.Fatal("chroot needs root")
		}
		t.Skip("chroot needs root")
	}
	src := filepath.Join(t.TempDir(), "main.go")
	os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from the image\") }\n"), 0o644)
	exe := filepath.Join(t.TempDir(), "hello")
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := newStore(t)
	prog, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	hello := install(t, s, "hello", map[string]string{"bin/hello*": string(prog)})
	im, err := Write(context.Background(), s, hello, filepath.Join(t.TempDir(), "oci"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := unpack(t, im)
	run := exec.Command(im.Config.Config.Cmd[0])
	run.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	run.Dir = "/"
	run.Env = im.Config.Config.Env
	out, err := run.CombinedOutput()
	if err != nil || string(out) != "hello from the image\n" {
		t.Fatalf("in the chroot: %v\n%s", err, out)
	}
}
