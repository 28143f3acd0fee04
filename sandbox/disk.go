package sandbox

import (
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// This file measures what a build writes to its writable mounts while it
// runs, for Limits.Disk.

// diskWatch measures, again and again, the blocks used by the trees
// under dirs, and calls over once, with the total, when it exceeds limit.
// Measuring pauses at least 100 ms and at least ten times what the last
// measure took (at most 2 s), so that it costs the build little. stop
// ends it and waits until it has ended.
func diskWatch(dirs []string, limit int64, over func(used int64)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pause := 100 * time.Millisecond
		for {
			select {
			case <-done:
				return
			case <-time.After(pause):
			}
			start := time.Now()
			if used := diskUsage(dirs); used > limit {
				over(used)
				return
			}
			pause = min(max(100*time.Millisecond, 10*time.Since(start)), 2*time.Second)
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// diskUsage returns the bytes of the blocks the files under dirs use,
// each file once however many links it has. Files that go while it
// counts are skipped.
func diskUsage(dirs []string) int64 {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return nil
			}
			if st.Nlink > 1 && !e.IsDir() {
				k := inode{uint64(st.Dev), st.Ino}
				if seen[k] {
					return nil
				}
				seen[k] = true
			}
			total += st.Blocks * 512
			return nil
		})
	}
	return total
}
