package sandbox

import (
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// The init is started in the build's cgroup rather than moved there once
// started. Writing a process's pid to cgroup.procs takes the kernel's
// global cgroup_threadgroup_rwsem for writing, whose percpu_down_write
// waits for an RCU grace period (~2 ms here, serialising every build).
// The kernel skips that lock when a thread moves itself alone (it writes
// 0 to a v1 hierarchy's tasks file: cgroup_procs_write_start sets
// threadgroup_locked = pid || threadgroup, false then; in the 6.x
// source, and lock mode CGRP_ATTACH_LOCK_NONE where that replaced it),
// and a child starts in its parent thread's cgroups. So the thread that
// starts the init, locked to its OS thread, moves itself into the
// build's v1 memory and pids cgroups, starts the init, which is born
// there, and moves itself back into the caller's. On cgroup v2 the init
// is cloned into its cgroup (clone3 with CLONE_INTO_CGROUP). If any step
// fails, the init's pid is written to cgroup.procs as before; a thread
// that could not move back never runs anything else (Run lets it end
// with its goroutine).

// callerTasks are the tasks files of the caller's v1 memory and pids
// cgroups, opened once, by directory.
var callerTasks = sync.OnceValue(func() map[string]*os.File {
	h := cgroupHostOnce()
	fs := map[string]*os.File{}
	for _, d := range []string{h.memory, h.pids} {
		if d == "" {
			continue
		}
		if f, err := os.OpenFile(filepath.Join(d, "tasks"), os.O_WRONLY, 0); err == nil {
			fs[d] = f
		}
	}
	return fs
})

// enterThread moves the calling thread, locked to its OS thread, into
// cg's v1 hierarchies. If it returns entered, the caller must call leave
// (once the init is started), which moves the thread back into the
// caller's cgroups; if leave fails, the thread is in the build's cgroup
// and must end. If it returns !entered, the thread is where it was, or
// tainted is set: it could not move back.
func (cg *cgroup) enterThread() (leave func() error, entered, tainted bool) {
	if cg == nil || cg.v2 != "" || (cg.memory == "" && cg.pids == "") {
		return nil, false, false
	}
	h := cgroupHostOnce()
	back := callerTasks()
	var into, out []*os.File
	defer func() {
		for _, f := range into {
			f.Close()
		}
	}()
	for _, p := range []struct{ dir, parent string }{{cg.memory, h.memory}, {cg.pids, h.pids}} {
		if p.dir == "" {
			continue
		}
		b := back[p.parent]
		if b == nil {
			return nil, false, false
		}
		f, err := os.OpenFile(filepath.Join(p.dir, "tasks"), os.O_WRONLY, 0)
		if err != nil {
			return nil, false, false
		}
		into, out = append(into, f), append(out, b)
	}
	leave = func() error {
		var first error
		for _, b := range out {
			if err := moveSelf(b); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for _, f := range into {
		if err := moveSelf(f); err != nil {
			return nil, false, leave() != nil
		}
	}
	return leave, true, false
}

// moveSelf moves the calling thread alone into the cgroup whose tasks
// file is f.
func moveSelf(f *os.File) error {
	_, err := unix.Write(int(f.Fd()), []byte("0"))
	return err
}

// openV2 opens cg's v2 directory for clone3's CLONE_INTO_CGROUP, or
// returns nil.
func (cg *cgroup) openV2() *os.File {
	if cg == nil || cg.v2 == "" {
		return nil
	}
	f, err := os.OpenFile(cg.v2, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil
	}
	return f
}
