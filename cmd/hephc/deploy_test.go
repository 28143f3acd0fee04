package main

import (
	"bytes"
	"fmt"
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

// TestCheckDeviceFree: a block device that is mounted (the first the test
// machine has mounted, usually the one holding /) is refused, naming
// where.
func TestCheckDeviceFree(t *testing.T) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || strings.HasPrefix(f[2], "0:") {
			continue
		}
		// A node of our own for the mounted device (stat is all the check
		// needs of it): as root, anywhere.
		var major, minor uint32
		if _, err := fmt.Sscanf(f[2], "%d:%d", &major, &minor); err != nil {
			continue
		}
		dev := filepath.Join(t.TempDir(), "dev")
		if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
			t.Skipf("making a block device node: %v", err)
		}
		err := checkDeviceFree(dev)
		want := fmt.Sprintf("is mounted (at %s)", f[4])
		if f[4] == "/" {
			want = "holds / (the running system)"
		}
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("%s, mounted at %s: %v", dev, f[4], err)
		}
		if !strings.Contains(err.Error(), "refused") || (!strings.Contains(err.Error(), want) && !strings.Contains(err.Error(), "is mounted")) {
			t.Errorf("%s: %v, want %q", dev, err, want)
		}
		return
	}
	t.Skip("no mounted block device to try")
}
