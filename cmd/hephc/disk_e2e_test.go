package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"hephc.dev/hephc/store"
)

// TestDiskImageABDeploy installs the example workstation as a person does
// on a machine, with the disk image file standing for the drive: the disk
// image (bit-identical from a second store) boots under OVMF to the
// self-test, which marks slot A's entry good; a second generation (a
// changed file) deployed into slot B boots and is marked good; a third
// whose self-test fails (a service whose program is missing) goes into
// slot A with one try, boots, fails, and the next boot is generation 2
// again, from slot B. Each boot is seen on the console (the kernel prints
// its command line, which names the loader entry).
func TestDiskImageABDeploy(t *testing.T) {
	t.Parallel() // one of the long e2e tests run two at a time (systemstore_test.go)
	storeDir, _, _ := systemStore(t)
	requireQEMU(t)
	requireOVMF(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "ws.img")
	hephc(t, repo, storeDir, "image", "--disk", "-A", "images.workstation", "system.cue", "-o", img)

	// A second store with only the image's inputs builds the same bytes.
	toplevel := imageToplevel(t, storeDir, "images.workstation")
	loaders, _ := filepath.Glob(filepath.Join(storeDir, "store", "*-systemd-boot-efi"))
	if len(loaders) != 1 {
		t.Fatalf("the shared store holds %d systemd-boot-efi paths, want 1", len(loaders))
	}
	loader := loaders[0]
	other := filepath.Join(dir, "store2")
	seedStore(t, other, storePathOf(t, toplevel), storePathOf(t, loader))
	img2 := filepath.Join(dir, "ws2.img")
	hephc(t, repo, other, "image", "--disk", "-A", "images.workstation", "system.cue", "-o", img2)
	if a, b := readFile(t, img), readFile(t, img2); !bytes.Equal(a, b) {
		t.Fatalf("the disk image differs when built in a second store")
	}
	os.RemoveAll(other)

	con := bootDiskConsole(t, img, "heph-boot: heph-0001-A is good")
	mustContain(t, con, "heph.entry=heph-0001-A", "HEPH-SELFTEST OK")

	// Generation 2: a file more.
	cfg := copyExampleSystem(t)
	editFile(t, filepath.Join(cfg, "system.cue"), `files: "/etc/hostname": content: "workstation\n"`,
		`files: {"/etc/hostname": content: "workstation\n", "/etc/heph-release": content: "2\n"}`)
	hephc(t, cfg, storeDir, "deploy", "--to", img, "-A", "images.workstation", "system.cue", "--tries", "2")
	status := hephc(t, cfg, storeDir, "deploy", "--status", "--to", img)
	mustContain(t, status, "slot A: generation 1, good:", "slot B: generation 2, on trial (2 tries left, 0 used), boots next:")
	con = bootDiskConsole(t, img, "heph-boot: heph-0002-B marked good (was heph-0002-B+1-1.conf)")
	mustContain(t, con, "heph.entry=heph-0002-B", "HEPH-SELFTEST OK")

	// Generation 3 fails its self-test: one try, then generation 2 again.
	editFile(t, filepath.Join(cfg, "system.cue"), `"/etc/heph-release": content: "2\n"}`,
		`"/etc/heph-release": content: "3\n"}
		services: broken: {command: "/bin/heph-missing", restart: "never"}`)
	hephc(t, cfg, storeDir, "deploy", "--to", img, "-A", "images.workstation", "system.cue", "--tries", "1")
	con = bootDiskConsole(t, img, "HEPH-SELFTEST FAIL")
	mustContain(t, con, "heph.entry=heph-0003-A", "service broken: /bin/heph-missing is missing")
	status = hephc(t, cfg, storeDir, "deploy", "--status", "--to", img)
	mustContain(t, status, "slot A: generation 3, bad (no tries left, 1 failed):", "slot B: generation 2, good, boots next:")
	con = bootDiskConsole(t, img, "heph-boot: heph-0002-B is good")
	mustContain(t, con, "heph.entry=heph-0002-B", "HEPH-SELFTEST OK")
}

// TestDeployRefusesBadInput: a .deb whose sha256 is not its pin, and a
// disk too small for the system: each a clear error, and nothing written
// (a file that is not ours and a mounted device: deploy_test.go).
func TestDeployRefusesBadInput(t *testing.T) {
	storeDir, _, _ := systemStore(t)
	dir := t.TempDir()
	// A .deb whose sha256 is not the pin's: nothing unpacked or stored (in
	// a new store: the path depends on the blake3 pin alone).
	cfg := copyExampleSystem(t)
	sys := filepath.Join(cfg, "system.cue")
	editFile(t, sys, `sha256:  "8f2b81bd`, `sha256:  "0f2b81bd`)
	fresh := filepath.Join(dir, "fresh")
	out, code := hephcCode(t, cfg, fresh, "realize", "--no-link", "-A", "systemdBoot", "system.cue")
	if code != 1 || !regexp.MustCompile(`sha256 mismatch: the pin says 0f2b81bd[0-9a-f]+, the archive served 8f2b81bd[0-9a-f]+; nothing was unpacked`).MatchString(out) {
		t.Errorf("a .deb whose sha256 differs: exit %d\n%s", code, out)
	}
	if m, _ := filepath.Glob(filepath.Join(fresh, "store", "*-systemd-boot-efi")); len(m) != 0 {
		t.Errorf("stored: %v", m)
	}
	editFile(t, sys, `sha256:  "0f2b81bd`, `sha256:  "8f2b81bd`)

	// An ESP too small: a copy of the configuration with espMiB: 100, which
	// holds slot A's workstation (kernel and initrd, 60–70 MB) and no more.
	editFile(t, sys, `name: "workstation-disk"`, `name: "workstation-disk"
	espMiB: 100`)
	img := filepath.Join(dir, "small.img")
	hephc(t, cfg, storeDir, "image", "--disk", "-A", "images.workstation", "system.cue", "-o", img)
	before := readFile(t, img)
	editFile(t, sys, `files: "/etc/hostname": content: "workstation\n"`,
		`files: {"/etc/hostname": content: "workstation\n", "/etc/heph-release": content: "2\n"}`)
	out, code = hephcCode(t, cfg, storeDir, "deploy", "--to", img, "-A", "images.workstation", "system.cue")
	if code != 1 || !regexp.MustCompile(`small.img is too small: slot B needs .*; nothing was written`).MatchString(out) {
		t.Errorf("a disk too small: exit %d\n%s", code, out)
	}
	if !bytes.Equal(readFile(t, img), before) {
		t.Error("the disk too small was written to")
	}
}

func requireOVMF(t *testing.T) {
	t.Helper()
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			if os.Getenv("HEPHC_E2E") != "" {
				t.Fatalf("HEPHC_E2E is set but OVMF is missing (apt-get install ovmf): %v", err)
			}
			t.Skipf("OVMF missing (apt-get install ovmf): %v", err)
		}
	}
}

// hephc runs hephc in dir with the store storeDir and returns its stdout
// and stderr; it must succeed.
func hephc(t *testing.T, dir, storeDir string, args ...string) string {
	t.Helper()
	out, code := hephcCode(t, dir, storeDir, args...)
	if code != 0 {
		t.Fatalf("hephc %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

func hephcCode(t *testing.T, dir, storeDir string, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: os.Getenv, store: storeDir}
	code := run(e, append([]string{"--store", storeDir}, args...))
	return stdout.String() + stderr.String(), code
}

// bootDiskConsole boots img under OVMF until a console line contains
// expect and returns the console.
func bootDiskConsole(t *testing.T, img, expect string) string {
	t.Helper()
	return hephc(t, filepath.Dir(img), t.TempDir(), "boot", "--disk", img, "--expect", expect, "--timeout", "6m")
}

func mustContain(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("no %q in:\n%s", w, tail(text, 40))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func readFile(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// storePathOf is the store path of the physical path p in a store.
func storePathOf(t *testing.T, p string) store.Path {
	t.Helper()
	sp, err := store.ParsePath(filepath.Base(p))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}
