package sandbox

import (
	"io"
	"os"
	"sync"
)

// After the build: what Run gives back at once, and what it leaves to be
// torn down beside the next build.

// outputsAreFiles reports whether the build's output goes to files (or
// nowhere), which its processes write themselves. Other writers are fed
// from pipes by goroutines that end only with the init's exit: Run waits
// for it then.
func outputsAreFiles(s *Spec) bool {
	for _, w := range []io.Writer{s.Stdout, s.Stderr} {
		if _, ok := w.(*os.File); w != nil && !ok {
			return false
		}
	}
	return true
}

// shareStderr returns s, or a copy whose Stderr takes one Write at a
// time: slirp (Outbound) writes to it beside the init's output, and
// only files may be written to at once.
func shareStderr(s *Spec) *Spec {
	if _, ok := s.Stderr.(*os.File); !s.Outbound || s.Stderr == nil || ok {
		return s
	}
	c := *s
	c.Stderr = &lockedWriter{w: s.Stderr}
	if sameWriter(s.Stdout, s.Stderr) {
		c.Stdout = c.Stderr
	}
	return &c
}

// sameWriter reports whether a and b are the same writer (false if they
// cannot be compared).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() { recover() }()
	return a == b
}

// lockedWriter serialises the Writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A build is over once its init has reported: by then it has killed and
// reaped every process of the build (killRest). Its own exit, which
// unmounts the sandbox's file systems and, for a writable overlay that is
// not volatile, syncs the whole upper file system (volatile.go), can take
// milliseconds of waiting for the disk. With Spec.WorkDir (realize's
// pool), Run returns without it: the init's exit, and then the cgroup,
// the work directory and the build's uid, are dealt with beside the next
// build (releaseLater); the next Run with that WorkDir waits for them
// first, and WaitTeardowns for all of them.
var teardowns struct {
	mu      sync.Mutex
	pending map[string]chan struct{} // WorkDir → closed once torn down
	wg      sync.WaitGroup
}

// waitTeardown waits until the Run that last used dir as its WorkDir has
// been torn down.
func waitTeardown(dir string) {
	if dir == "" {
		return
	}
	teardowns.mu.Lock()
	ch := teardowns.pending[dir]
	teardowns.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// releaseLater waits for the init to exit (exiting) and releases what the
// build held, in the background.
func (r *run) releaseLater(exiting func()) {
	dir, ch := r.spec.WorkDir, make(chan struct{})
	teardowns.mu.Lock()
	if teardowns.pending == nil {
		teardowns.pending = map[string]chan struct{}{}
	}
	teardowns.pending[dir] = ch
	teardowns.mu.Unlock()
	teardowns.wg.Add(1)
	go func() {
		defer teardowns.wg.Done()
		exiting()
		aside := r.releaseWorkDirs()
		teardowns.mu.Lock()
		if teardowns.pending[dir] == ch {
			delete(teardowns.pending, dir)
		}
		teardowns.mu.Unlock()
		close(ch)
		r.releaseRest()
		removeAside(aside)
	}()
}

// WaitTeardowns waits until every sandbox a Run has returned from is torn
// down: its init gone, its cgroup removed, its work directory emptied;
// and stops the slots' inits (keeper.go).
// A process calls it before it exits (realize.Realize does).
func WaitTeardowns() {
	teardowns.wg.Wait()
	stopKeepers()
}

// giveBack gives the writable mounts back to the caller, once no process
// of the build is left.
func (r *run) giveBack() {
	if r.chowned {
		for _, d := range r.writable {
			chownTree(d, r.ids.ownerUID, r.ids.ownerGID)
		}
	}
	for _, l := range r.lent {
		os.Lchown(l.path, l.uid, l.gid)
	}
}

// release undoes the rest of prepare once the init has exited: the work
// directories, the cgroup, then the build's uid.
func (r *run) release() {
	aside := r.releaseWorkDirs()
	r.releaseRest()
	removeAside(aside)
}

// releaseWorkDirs removes the work directories made beside the writable
// ones, and empties those in the caller's WorkDir, which are kept for
// its next Run, the caller's again: what overlayfs left there is set
// aside (setAside) and returned, to be removed.
func (r *run) releaseWorkDirs() (aside []string) {
	for _, w := range r.works {
		if r.spec.WorkDir == "" {
			removeWorkDir(w)
			continue
		}
		aside = append(aside, setAside(w)...)
		if r.ids.own() {
			os.Lchown(w, r.ids.ownerUID, r.ids.ownerGID)
		}
	}
	return aside
}

// releaseRest removes the build's cgroup and gives its uid back (a
// keeper's are the keeper's).
func (r *run) releaseRest() {
	if r.keeper == nil {
		r.cg.remove()
	}
	if r.ids != nil && r.keeper == nil {
		r.ids.release()
	}
}
