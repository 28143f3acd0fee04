package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// A system booted from a heph disk (hephc image --disk, hephc deploy) has
// heph.entry=ID on its command line: the systemd-boot loader entry it was
// started from. A new generation's entry counts its boots in its file
// name (loader/entries/ID+LEFT-DONE.conf, systemd-boot's Automatic Boot
// Assessment); once the self-test passes, markGood renames it ID.conf, as
// systemd-bless-boot does, and the loader keeps booting it. An entry whose
// tries run out is skipped: the other slot boots.

// espName is the GPT partition name of a heph disk's EFI system partition
// (builder.ESPName).
const espName = "heph-esp"

// Where markGood looks; tests point them elsewhere.
var (
	cmdlineFile = "/proc/cmdline"
	sysBlock    = "/sys/class/block"
	devDir      = "/dev"
	espMount    = "/run/heph-esp"
	mount       = func(dev, dir string) error { return syscall.Mount(dev, dir, "vfat", 0, "") }
	unmount     = func(dir string) error { return syscall.Unmount(dir, 0) }
	syncFS      = syscall.Sync
)

// markGood marks the loader entry this system booted from good, saying
// so on out; it does nothing when the system was not booted from a heph
// disk.
func markGood(out io.Writer) error {
	id := bootEntry()
	if id == "" {
		return nil
	}
	dev, err := findESP()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(espMount, 0o755); err != nil {
		return err
	}
	if err := mount(dev, espMount); err != nil {
		return fmt.Errorf("mounting the ESP %s: %w", dev, err)
	}
	msg, err := rename(filepath.Join(espMount, "loader", "entries"), id)
	syncFS()
	if uerr := unmount(espMount); err == nil && uerr != nil {
		err = fmt.Errorf("unmounting the ESP: %w", uerr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "heph-boot: %s\n", msg)
	return nil
}

// bootEntry is the heph.entry= of the kernel's command line, or "".
func bootEntry() string {
	b, err := os.ReadFile(cmdlineFile)
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "heph.entry="); ok && v != "" && !strings.ContainsAny(v, "/+") {
			return v
		}
	}
	return ""
}

// findESP returns the device of the partition named espName.
func findESP() (string, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "uevent"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l == "PARTNAME="+espName {
				return filepath.Join(devDir, e.Name()), nil
			}
		}
	}
	return "", fmt.Errorf("no partition named %s (in %s)", espName, sysBlock)
}

// rename renames id's counting entry in dir to id.conf.
func rename(dir, id string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, id+".conf")); err == nil {
		return id + " is good", nil
	}
	matches, err := filepath.Glob(filepath.Join(dir, id+"+*.conf"))
	if err != nil {
		return "", err
	}
	if len(matches) != 1 {
		return "", fmt.Errorf("no loader entry %s+….conf to mark good (%d found)", id, len(matches))
	}
	if err := os.Rename(matches[0], filepath.Join(dir, id+".conf")); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s marked good (was %s)", id, filepath.Base(matches[0])), nil
}
