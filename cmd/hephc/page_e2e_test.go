package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const bootTestToken = "heph_BOOTtokenBOOTtokenBOOTtokenBOOTtokenBOOTtok"

// hephc boot --reporter-token-file hands the token to the guest in a
// file QEMU reads (fw_cfg) and in a -readconfig file of mode 0600 (the
// kernel command line), never in QEMU's argv, which every user of the
// host can read, nor in what --dry-run prints.
func TestBootReporterToken(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	sys := fakeToplevel(t, dir, toplevelFiles)
	sys, _ = filepath.EvalSymlinks(sys)
	tokFile := filepath.Join(dir, "reporter,token")
	if err := os.WriteFile(tokFile, []byte(bootTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := hephcIn(dir, "boot", "--dry-run", "--reporter-token-file", "reporter,token")
	if code != 0 || strings.Contains(stdout+stderr, bootTestToken) ||
		!strings.Contains(stdout, "quiet heph.reporter_token=(from "+tokFile+")") ||
		!strings.Contains(stdout, "name=opt/heph/reporter-token,file="+dir+"/reporter,,token") {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, stderr)
	}
	cfgCopy := filepath.Join(dir, "cfg-copy")
	exe, _, argsfile := fakeQEMU(t, `prev=; for a; do [ "$prev" = -readconfig ] && cp "$a" `+cfgCopy+` && stat -c %a "$a" >`+cfgCopy+`.mode && echo "$a" >`+cfgCopy+`.path; prev=$a; done; echo BOOTED`)
	code, stdout, stderr = hephcIn(dir, "boot", "--qemu", exe, "--expect", "BOOTED", "--reporter-token-file", tokFile)
	if code != 0 {
		t.Fatalf("boot: exit %d\n%s%s", code, stdout, stderr)
	}
	args, _ := os.ReadFile(argsfile)
	if strings.Contains(string(args), bootTestToken) || strings.Contains(string(args), "-append") {
		t.Fatalf("QEMU's argv holds the command line or the token:\n%s", args)
	}
	cfg, _ := os.ReadFile(cfgCopy)
	want := "[machine]\n  append = \"console=ttyS0 panic=-1 no_timer_check quiet heph.reporter_token=" + bootTestToken + "\"\n"
	if string(cfg) != want {
		t.Fatalf("QEMU's config:\n%s\nwant\n%s", cfg, want)
	}
	if mode, _ := os.ReadFile(cfgCopy + ".mode"); strings.TrimSpace(string(mode)) != "600" {
		t.Fatalf("config mode %s", mode)
	}
	path, _ := os.ReadFile(cfgCopy + ".path")
	if _, err := os.Stat(strings.TrimSpace(string(path))); !os.IsNotExist(err) {
		t.Fatalf("the config with the token outlived QEMU: %v", err)
	}
	if !strings.Contains(string(args), "-fw_cfg\nname=opt/heph/reporter-token,file="+dir+"/reporter,,token") {
		t.Fatalf("no fw_cfg:\n%s", args)
	}
	// Not a token: refused, its content never shown.
	os.WriteFile(tokFile, []byte("hunter2-not-a-token"), 0o600)
	code, stdout, stderr = hephcIn(dir, "boot", "--dry-run", "--reporter-token-file", tokFile)
	if code == 0 || strings.Contains(stdout+stderr, "hunter2") || !strings.Contains(stderr, "not a package server token") {
		t.Fatalf("a bad token: exit %d\n%s%s", code, stdout, stderr)
	}
}
