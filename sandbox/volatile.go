package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A writable overlay is volatile (Linux 5.10 and later) unless its upper
// directory is on ext4 without a journal.
//
// Without the option, the last reference to an overlay with an upper
// layer, at the init's exit, syncs the whole upper file system
// (sync_filesystem of the store's disk: every dirty inode written back,
// the journal committed, the disk flushed), once per build, while Run
// waits. hephc's durability does not rest on it: an output counts once
// its registration has synced the store's file system
// (store/register.go: the output renamed into the store, its record,
// syncfs, then the transaction), which writes what the build wrote
// through the overlay like any other dirty page of that disk, and a
// build cut short is never registered. A volatile overlay leaves
// work/incompat/volatile, which goes with its work directory
// (removeWorkDir).
//
// But those are two more directories a build, and on ext4 without a
// journal each new inode skips every inode deleted in the last 30
// seconds, and, mounted with discard, each freed block is discarded
// synchronously; while its sync, with no journal to commit, costs little.
// Measured there (BenchmarkRunBuild), the volatile overlay was no faster
// and used more CPU; on a journaled ext4, it halved a build's time.

// volatileHelps reports whether the writable overlay of the directory
// dir is to be volatile. A variable, for tests.
var volatileHelps = func(dir string) bool {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return true
	}
	if v, ok := volatileByDev.Load(st.Dev); ok {
		return v.(bool)
	}
	v := !ext4WithoutJournal(dir, st.Dev)
	volatileByDev.Store(st.Dev, v)
	return v
}

var volatileByDev sync.Map // st_dev → bool

// ext4WithoutJournal reports whether dir, on the device dev, is on an
// ext4 file system without a journal, as far as /sys and /proc/fs/ext4
// tell.
func ext4WithoutJournal(dir string, dev uint64) bool {
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil || fs.Type != unix.EXT4_SUPER_MAGIC {
		return false
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev)))
	if err != nil {
		return false
	}
	opts, err := os.ReadFile(filepath.Join("/proc/fs/ext4", filepath.Base(link), "options"))
	return err == nil && !ext4Journaled(string(opts))
}

// ext4Journaled reports whether an ext4 file system with the options
// opts (/proc/fs/ext4/DEV/options) has a journal: then they say how
// data is journaled (data=ordered, writeback or journal).
func ext4Journaled(opts string) bool {
	for _, o := range strings.Fields(opts) {
		if strings.HasPrefix(o, "data=") {
			return true
		}
	}
	return false
}
