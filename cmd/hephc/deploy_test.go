package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDeployRefusesAFileNotOurs: deploy to a file that is not a heph disk
// fails before anything is evaluated or built, and the file is unchanged.
func TestDeployRefusesAFileNotOurs(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "zeros.img")
	zeros := make([]byte, 4<<20)
	if err := os.WriteFile(f, zeros, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	storeDir := filepath.Join(t.TempDir(), "store")
	e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: os.Getenv, store: storeDir}
	code := run(e, []string{"--store", storeDir, "deploy", "--to", f, "-A", "images.workstation", "system.cue"})
	if code != 1 || !strings.Contains(stderr.String(), "zeros.img: not a heph disk image") || !strings.Contains(stderr.String(), "nothing was written") {
		t.Errorf("exit %d\n%s", code, stderr.String())
	}
	if b, _ := os.ReadFile(f); !bytes.Equal(b, zeros) {
		t.Error("the file was written to")
	}
	if _, err := os.Stat(storeDir); err == nil {
		t.Error("a store was made")
	}
}

// fakeBlockDevices points checkDeviceFree at a made-up machine: disk
// sda (8:0) with partitions sda1 (8:1, /boot) and sda2 (8:2, /), disk
// sdb (8:16) with sdb1 (8:17, /mnt/data), disk sdc (8:32) with sdc1
// (8:33) mounted nowhere.
func fakeBlockDevices(t *testing.T) {
	root := t.TempDir()
	write := func(path, content string) {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []struct {
		name, num string
		parts     map[string]string
	}{
		{"sda", "8:0", map[string]string{"sda1": "8:1", "sda2": "8:2"}},
		{"sdb", "8:16", map[string]string{"sdb1": "8:17"}},
		{"sdc", "8:32", map[string]string{"sdc1": "8:33"}},
	} {
		write("dev/block/"+d.num+"/uevent", "MAJOR=8\nDEVNAME="+d.name+"\nDEVTYPE=disk\n")
		write("class/block/"+d.name+"/dev", d.num+"\n")
		write("class/block/"+d.name+"/queue/scheduler", "none\n")
		for p, num := range d.parts {
			write("class/block/"+d.name+"/"+p+"/dev", num+"\n")
			write("dev/block/"+num+"/uevent", "DEVNAME="+p+"\nDEVTYPE=partition\n")
		}
	}
	write("mountinfo", `22 1 0:21 / /proc rw,nosuid - proc proc rw
29 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
30 29 8:1 / /boot rw,relatime shared:2 - vfat /dev/sda1 rw
31 29 8:17 / /mnt/data rw,relatime shared:3 - ext4 /dev/sdb1 rw
`)
	saved := []string{sysDevBlock, sysClassBlock, mountInfo}
	sysDevBlock, sysClassBlock, mountInfo = filepath.Join(root, "dev/block"), filepath.Join(root, "class/block"), filepath.Join(root, "mountinfo")
	t.Cleanup(func() { sysDevBlock, sysClassBlock, mountInfo = saved[0], saved[1], saved[2] })
}

// TestCheckDeviceFree: a block device that is mounted, or a partition of
// which is, is refused, naming where; one that holds / says so; a free
// one passes.
func TestCheckDeviceFree(t *testing.T) {
	fakeBlockDevices(t)
	for _, tc := range []struct {
		dev          string
		major, minor uint32
		want         string // "": free
	}{
		{"/dev/sda", 8, 0, "/dev/sda holds / (the running system): refused; nothing was written"},
		{"/dev/sda1", 8, 1, "/dev/sda1 is mounted (at /boot): refused; unmount it first; nothing was written"},
		{"/dev/sdb", 8, 16, "/dev/sdb is mounted (at /mnt/data): refused; unmount it first"},
		{"/dev/sdb1", 8, 17, "/dev/sdb1 is mounted (at /mnt/data)"},
		{"/dev/sdc", 8, 32, ""},
		{"/dev/sdc1", 8, 33, ""},
		{"/dev/loop0", 7, 0, ""}, // not in sysfs: itself only
	} {
		err := deviceFree(tc.dev, tc.major, tc.minor)
		if (tc.want == "" && err != nil) || (tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want))) {
			t.Errorf("%s (%d:%d): %v, want %q", tc.dev, tc.major, tc.minor, err, tc.want)
		}
	}

	// The device's number comes from the node: one of our own, made as
	// root anywhere (CI runs as root).
	dev := filepath.Join(t.TempDir(), "sdb")
	if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(8, 16))); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("making a block device node as root: %v", err)
		}
		t.Logf("not root: the node part is not tried (%v)", err)
		return
	}
	if err := checkDeviceFree(dev); err == nil || !strings.Contains(err.Error(), "is mounted (at /mnt/data): refused") {
		t.Errorf("%s (8:16): %v", dev, err)
	}
}
