package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemRealizesAndBoots is the README's main command on a fresh
// store (the shared one, systemStore): realize the whole example system
// (pinned sources fetched, base group and both images built offline, the
// images' tests booting them in QEMU as the policy requires). A broken
// service fails the self-test; a second realize does nothing.
func TestSystemRealizesAndBoots(t *testing.T) {
	storeDir, firstStderr, took := systemStore(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: os.Getenv, store: storeDir}
	t.Logf("realized the system from nothing in %v", took.Round(time.Second))
	if !strings.Contains(firstStderr, "recorded generation 1 of profile system") {
		t.Errorf("realizing a system recorded no generation:\n%s", firstStderr)
	}

	g, _, err := evaluate(e, evaluation{args: []string{"system.cue"}, policy: true, useCache: true})
	if err != nil {
		t.Fatal(err)
	}
	// The base group's programs were built with the pinned toolchain and
	// run here.
	age, ok := g.Roots["base.packages.age"]
	if !ok {
		t.Fatal("system.cue has no root base.packages.age")
	}
	keygen := filepath.Join(storeDir, "store", g.Nodes[age].Path().Base(), "bin", "age-keygen")
	if out, err := exec.Command(keygen).CombinedOutput(); err != nil || !strings.Contains(string(out), "AGE-SECRET-KEY-") {
		t.Errorf("the built age-keygen: %v\n%s", err, out)
	}
	for _, image := range []string{"images.workstation", "images.server"} {
		h, ok := g.Roots[image]
		if !ok {
			t.Fatalf("system.cue has no root %s", image)
		}
		top := filepath.Join(storeDir, "store", g.Nodes[h].Path().Base())
		for _, f := range []string{"kernel", "initrd", "cmdline", "manifest.json"} {
			if _, err := os.Stat(filepath.Join(top, f)); err != nil {
				t.Fatalf("%s: %v", image, err)
			}
		}
	}
	// Both images booted in that realize: the example policy requires
	// their tests (the self-test, the sentinel, the console shell), and
	// realize records no generation unless they pass. TestTestSystem
	// reads their results.

	// A service whose program is not in the image fails the self-test,
	// naming the service (only the initramfs and toplevel are rebuilt).
	broken := systemWith(t, repo, "images: server: initramfs: services: sshd: command: \"/bin/sshd\"\n")
	stdout.Reset()
	stderr.Reset()
	eb := &env{stdout: &stdout, stderr: &stderr, cwd: broken, getenv: os.Getenv, store: storeDir}
	if code := run(eb, []string{"--store", storeDir, "realize", "--no-link", "-A", "images.server", "."}); code != 0 {
		t.Fatalf("realize with a missing service binary: exit %d\n%s", code, stderr.String())
	}
	top := filepath.Join(storeDir, "store", strings.TrimPrefix(strings.TrimSpace(stdout.String()), "/heph/store/"))
	bootAndExpect(t, top, "HEPH-SELFTEST FAIL: service sshd: /bin/sshd is missing", 180*time.Second)

	stdout.Reset()
	stderr.Reset()
	if code := run(e, []string{"--store", storeDir, "realize", "--no-link", "system.cue"}); code != 0 {
		t.Fatalf("second realize: exit %d\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "nothing to do") {
		t.Errorf("the second realize did work:\n%s", stderr.String())
	}

	// A policy's closure size limit is known once the images are built:
	// check and realize enforce it against the store.
	tight := filepath.Join(t.TempDir(), "tight.cue")
	tightPolicy := "package org\n\nimport \"hephc.dev/heph\"\n\npolicy: heph.#Policy & {images: server: maxClosureBytes: 1000000}\n"
	if err := os.WriteFile(tight, []byte(tightPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"check"}, {"realize", "--no-link"}} {
		stdout.Reset()
		stderr.Reset()
		args := append(append([]string{"--store", storeDir}, cmd...), "--policy", tight, "system.cue")
		if code := run(e, args); code != 1 {
			t.Errorf("hephc %s with a 1 MB closure limit: exit %d, want 1\n%s", cmd[0], code, stderr.String())
		}
		if want := "images.server: the closure of image server is "; !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "rule images.server.maxClosureBytes") {
			t.Errorf("hephc %s with a 1 MB closure limit: stderr\n%s\nwant %q and the rule", cmd[0], stderr.String(), want)
		}
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "the closure of image") {
			t.Logf("closure size check: %s", line)
		}
	}
}
