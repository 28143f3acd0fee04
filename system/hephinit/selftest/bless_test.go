package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMarkGood: booted from entry heph-0002-B, a passing self-test renames
// heph-0002-B+2-1.conf to heph-0002-B.conf on the ESP (found by its
// partition name), mounted and unmounted; without heph.entry nothing is
// touched.
func TestMarkGood(t *testing.T) {
	dir := t.TempDir()
	cmdlineFile = filepath.Join(dir, "cmdline")
	sysBlock = filepath.Join(dir, "sys")
	devDir = "/dev"
	espMount = filepath.Join(dir, "esp")
	entries := filepath.Join(espMount, "loader", "entries")
	var mounted []string
	mount = func(dev, d string) error { mounted = append(mounted, dev); return os.MkdirAll(entries, 0o755) }
	unmount = func(string) error { mounted = append(mounted, "umount"); return nil }
	syncFS = func() {}
	for name, uevent := range map[string]string{"vda": "DEVTYPE=disk\n", "vda1": "DEVTYPE=partition\nPARTN=1\nPARTNAME=heph-esp\n", "vda2": "PARTNAME=heph-data\n"} {
		os.MkdirAll(filepath.Join(sysBlock, name), 0o755)
		os.WriteFile(filepath.Join(sysBlock, name, "uevent"), []byte(uevent), 0o644)
	}
	os.MkdirAll(entries, 0o755)
	os.WriteFile(filepath.Join(entries, "heph-0002-B+2-1.conf"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(entries, "heph-0001-A.conf"), []byte("x"), 0o644)

	os.WriteFile(cmdlineFile, []byte("console=ttyS0 panic=-1\n"), 0o644)
	var out bytes.Buffer
	if err := markGood(&out); err != nil || out.Len() != 0 || len(mounted) != 0 {
		t.Fatalf("without heph.entry: %v, %q, mounts %v", err, out.String(), mounted)
	}
	os.WriteFile(cmdlineFile, []byte("console=ttyS0 panic=-1 heph.entry=heph-0002-B\n"), 0o644)
	if err := markGood(&out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(entries, "heph-0002-B.conf")); err != nil {
		t.Fatalf("not renamed: %v", err)
	}
	if !strings.Contains(out.String(), "heph-boot: heph-0002-B marked good (was heph-0002-B+2-1.conf)") {
		t.Errorf("output %q", out.String())
	}
	if strings.Join(mounted, " ") != "/dev/vda1 umount" {
		t.Errorf("mounts %v", mounted)
	}
}
