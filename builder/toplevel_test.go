package builder_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/builder"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// TestSystemToplevel assembles a toplevel from a kernel module and an
// initramfs (both stand-ins served as modules): copies of the kernel and
// the archive, the command line, and a manifest that names every package
// with the content hash and size the store recorded, the services, the
// console shell and every pin once; an image whose consoleShell is not
// its initramfs's fails.
func TestSystemToplevel(t *testing.T) {
	proxy := t.TempDir()
	kernelSum := proxyModule(t, proxy, "example.com/kernel", "v1.0.0", map[string]string{
		"go.mod":       "module example.com/kernel\n",
		"boot/vmlinuz": "not really a kernel\n",
	})
	agePin := builder.Pin{Name: "filippo.io-age-v1.3.2", Module: "filippo.io/age", Version: "v1.3.2", Hash: "h1:r6RSZLFSMm6rzKepZ7ZAYkKCu14f3/Me8c7uKYh7C8c="}
	toolchainPin := builder.Pin{Name: "toolchain", Module: "golang.org/toolchain", Version: "v0.0.1-go1.26.8.linux-amd64", Hash: "h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM="}
	im := builder.InitramfsManifest{
		Name:         "initramfs",
		Commands:     []string{"core"},
		Packages:     []builder.Package{{Name: "age", Version: "v1.3.2", Path: "/heph/store/x-age", Files: []string{"/bin/age"}, Pins: []builder.Pin{agePin, toolchainPin}}},
		Files:        []string{"/etc/hostname"},
		ConsoleShell: true,
		Pins:         []builder.Pin{toolchainPin},
	}
	// The services as the initramfs builder writes them (their type is
	// the builder's own).
	var imMap map[string]any
	b, _ := json.Marshal(im)
	json.Unmarshal(b, &imMap)
	imMap["services"] = map[string]any{"selftest": map[string]any{"command": "/bin/selftest", "args": []string{}, "restart": "never"}}
	imJSON, _ := json.Marshal(imMap)
	initrdSum := proxyModule(t, proxy, "example.com/initramfs", "v1.0.0", map[string]string{
		"go.mod":        "module example.com/initramfs\n",
		"initrd":        "070701 not really a cpio\n",
		"manifest.json": string(imJSON),
	})

	g := newGraph()
	kernel := g.add(t, &store.Derivation{Name: "kernel", Version: "v1.0.0", Builder: "builtin:fetch-gomod",
		Attrs: map[string]any{"module": "example.com/kernel", "version": "v1.0.0"}, OutputHash: kernelSum})
	initrd := g.add(t, &store.Derivation{Name: "initramfs", Version: "v1.0.0", Builder: "builtin:fetch-gomod",
		Attrs: map[string]any{"module": "example.com/initramfs", "version": "v1.0.0"}, OutputHash: initrdSum})
	top := g.add(t, &store.Derivation{Name: "workstation", Builder: "builtin:system-toplevel",
		Inputs: map[string]store.DrvHash{"kernel": kernel, "initrd": initrd},
		Attrs:  map[string]any{"cmdline": "console=ttyS0 panic=-1", "kernelFile": "boot/vmlinuz", "consoleShell": true}})
	// An image whose consoleShell is not its initramfs's is refused.
	mismatch := g.add(t, &store.Derivation{Name: "server", Builder: "builtin:system-toplevel",
		Inputs: map[string]store.DrvHash{"kernel": kernel, "initrd": initrd},
		Attrs:  map[string]any{"cmdline": "console=ttyS0 panic=-1", "kernelFile": "boot/vmlinuz", "consoleShell": false}})
	st := openStore(t)
	ctx := context.Background()
	if _, err := realize.Realize(ctx, st, g.g, []store.DrvHash{top}, realize.Options{Getenv: proxyEnv(proxy)}); err != nil {
		t.Fatal(err)
	}
	_, err := realize.Realize(ctx, st, g.g, []store.DrvHash{mismatch}, realize.Options{Getenv: proxyEnv(proxy)})
	var be *realize.BuildError
	if !errors.As(err, &be) || !strings.Contains(strings.Join(be.LogTail, "\n"), "attrs.consoleShell is false, but input initrd's console shell is true") {
		t.Errorf("got %v, want a build error saying the console shells differ", err)
	}
	out := st.Physical(g.g.PathOf(top))
	for file, want := range map[string]string{
		"kernel":  "not really a kernel\n",
		"initrd":  "070701 not really a cpio\n",
		"cmdline": "console=ttyS0 panic=-1\n",
	} {
		if b, err := os.ReadFile(filepath.Join(out, file)); err != nil || string(b) != want {
			t.Errorf("%s: got %q (%v), want %q", file, b, err, want)
		}
	}

	var m builder.Manifest
	b, err = os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Name != "workstation" || m.Cmdline != "console=ttyS0 panic=-1" || m.System != "x86_64-linux" || !m.ConsoleShell {
		t.Errorf("got name %q, cmdline %q, system %q, console shell %v", m.Name, m.Cmdline, m.System, m.ConsoleShell)
	}
	for _, c := range []struct {
		got  builder.Package
		drv  store.DrvHash
		file string
	}{{m.Kernel, kernel, "/boot/vmlinuz"}, {m.Initrd, initrd, "/initrd"}} {
		p := g.g.PathOf(c.drv)
		info, ok, err := st.QueryPathInfo(ctx, p)
		if err != nil || !ok {
			t.Fatalf("%s: %v", p, err)
		}
		if c.got.Path != p.String() || c.got.ContentHash != info.ContentHash.String() || c.got.Size != info.Size {
			t.Errorf("got %+v, want path %s, content hash %s, size %d as the store recorded", c.got, p, info.ContentHash, info.Size)
		}
		if !slices.Equal(c.got.Files, []string{c.file}) {
			t.Errorf("%s: got files %v, want [%s]", p, c.got.Files, c.file)
		}
	}
	var names []string
	for _, p := range m.Packages {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"age", "initramfs", "kernel"}) {
		t.Errorf("got packages %v, want age, initramfs and kernel (sorted)", names)
	}
	if svc, ok := m.Services["selftest"]; !ok || len(m.Services) != 1 {
		t.Errorf("got services %+v, want the initramfs's selftest", m.Services)
	} else if b, _ := json.Marshal(svc); string(b) != `{"command":"/bin/selftest","args":[],"restart":"never"}` {
		t.Errorf("got selftest %s", b)
	}
	var modules []string
	for _, p := range m.Pins {
		modules = append(modules, p.Module)
	}
	if want := []string{"example.com/initramfs", "example.com/kernel", "filippo.io/age", "golang.org/toolchain"}; !slices.Equal(modules, want) {
		t.Errorf("got pins of %v, want each of %v once, sorted", modules, want)
	}

	// The manifest names the kernel and the initramfs: the toplevel keeps
	// them alive.
	info, _, _ := st.QueryPathInfo(ctx, g.g.PathOf(top))
	if want := []store.Path{g.g.PathOf(kernel), g.g.PathOf(initrd)}; !sameSet(info.References, want) {
		t.Errorf("got references %v, want %v", info.References, want)
	}
}

// TestSystemToplevelNeedsAnInitramfs: an initrd input that is not a
// builtin:uroot output fails with a message saying so.
func TestSystemToplevelNeedsAnInitramfs(t *testing.T) {
	proxy := t.TempDir()
	sum := proxyModule(t, proxy, "example.com/kernel", "v1.0.0", map[string]string{"go.mod": "module example.com/kernel\n", "vmlinuz": "k"})
	g := newGraph()
	kernel := g.add(t, &store.Derivation{Name: "kernel", Version: "v1.0.0", Builder: "builtin:fetch-gomod",
		Attrs: map[string]any{"module": "example.com/kernel", "version": "v1.0.0"}, OutputHash: sum})
	top := g.add(t, &store.Derivation{Name: "top", Builder: "builtin:system-toplevel",
		Inputs: map[string]store.DrvHash{"kernel": kernel, "initrd": kernel}})
	_, err := realize.Realize(context.Background(), openStore(t), g.g, []store.DrvHash{top}, realize.Options{Getenv: proxyEnv(proxy)})
	var be *realize.BuildError
	if !errors.As(err, &be) || !strings.Contains(strings.Join(be.LogTail, "\n"), "input initrd is not an initramfs") {
		t.Errorf("got %v, want a build error saying the initrd is not an initramfs", err)
	}
}

func sameSet(a, b []store.Path) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range b {
		if !slices.Contains(a, p) {
			return false
		}
	}
	return true
}
