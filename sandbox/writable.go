package sandbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// This file mounts the writable directories. Each is the upper layer of
// an overlay (so that mountinfo names no host path, see mounts.go), and
// mounting an overlay with an upper layer costs four new inodes on the
// upper file system (its work directory, a temporary file, a whiteout
// and the file renamed over it), created and deleted at once: on ext4
// without a journal, where each new inode is found by skipping those
// deleted in the last 30 seconds, they were most of a trivial build's
// cost. So:
//
//   - writable directories side by side (a build's $out and /build)
//     share one overlay of their parent, mounted on a staging point, from
//     which each is bound, as are read-only sources in that parent (its
//     build.json), read-only; the staging point is detached once they
//     are bound, like the read-only overlays' (mounts.go);
//   - the mount points of the mounts below a writable directory (the
//     inputs below $out's store directory) are made in the overlay's
//     lower layer, a directory of the sandbox's own tmpfs root, not on
//     the host's disk.

// writableGroup is the writable directories that share an overlay of
// upper, by index in the spec's mounts; shared is false for a directory
// with an overlay of its own (upper is the directory).
type writableGroup struct {
	upper   string
	members []int
	shared  bool
}

// groupWritable groups the writable directories dirs (indexes in ms) by
// parent. Directories alone in their parent, or whose parent is itself
// one of them or "/", get overlays of their own.
func groupWritable(ms []mountJSON, dirs []int) []writableGroup {
	count := map[string]int{}
	isDir := map[string]bool{}
	for _, i := range dirs {
		src := filepath.Clean(ms[i].Source)
		count[filepath.Dir(src)]++
		isDir[src] = true
	}
	var gs []writableGroup
	byParent := map[string]int{}
	for _, i := range dirs {
		src := filepath.Clean(ms[i].Source)
		parent := filepath.Dir(src)
		if count[parent] < 2 || isDir[parent] || parent == "/" {
			gs = append(gs, writableGroup{upper: src, members: []int{i}})
			continue
		}
		if k, ok := byParent[parent]; ok {
			gs[k].members = append(gs[k].members, i)
			continue
		}
		byParent[parent] = len(gs)
		gs = append(gs, writableGroup{upper: parent, members: []int{i}, shared: true})
	}
	return gs
}

// stageWritable gives each writable overlay its lower layer, holding the
// mount points of the sources below it, and mounts the shared overlays
// on staging points, opening in them their members and the read-only
// sources of their upper directory. It runs before stage.
func (m *overlayMounter) stageWritable(o *opener) error {
	type overlay struct {
		src    *source // its first member
		lower  string
		stage  string
		fd     int // the staging point
		err    error
		parent unix.Stat_t // the upper directory's
	}
	var overlays []*overlay
	byUpper := map[string]*overlay{}
	for _, s := range o.sources {
		if !s.dir || s.readOnly || s.workFD < 0 {
			continue
		}
		if ov := byUpper[s.upper]; ov != nil && s.upper != "" {
			s.lower = ov.lower
			continue
		}
		ov := &overlay{src: s, lower: fmt.Sprintf("/.hephc/lower/%d", len(overlays)), fd: -1}
		overlays = append(overlays, ov)
		s.lower = ov.lower
		if s.upper != "" {
			byUpper[s.upper] = ov
		}
	}
	if len(overlays) == 0 {
		return nil
	}
	for _, ov := range overlays {
		fd, err := m.r.open(ov.lower, true, true)
		if err != nil {
			return fmt.Errorf("sandbox: making %s: %w", ov.lower, err)
		}
		unix.Close(fd)
	}
	// Mount points below a writable directory, in its lower layer.
	for _, t := range o.sources {
		w := writableAbove(o.sources, t)
		if w == nil {
			continue
		}
		stub := w.lower + t.target[len(w.target):]
		if w.upper != "" {
			stub = w.lower + "/" + filepath.Base(filepath.Clean(w.src)) + t.target[len(w.target):]
		}
		fd, err := m.r.open(stub, true, t.dir)
		if err != nil {
			return fmt.Errorf("sandbox: making the mount point of %s in %s: %w", t.target, w.target, err)
		}
		unix.Close(fd)
	}
	for _, ov := range overlays {
		if ov.src.upper == "" {
			continue
		}
		ov.stage = fmt.Sprintf("/%d", m.staged)
		m.staged++
		var err error
		if ov.fd, err = m.staging.open(ov.stage, true, true); err != nil {
			return fmt.Errorf("sandbox: making staging point %s: %w", ov.stage, err)
		}
		defer unix.Close(ov.fd)
		lower, err := m.r.open(ov.lower, false, true)
		if err != nil {
			return fmt.Errorf("sandbox: opening %s: %w", ov.lower, err)
		}
		ov.err = mountUpper(fdPath(ov.fd), fdPath(lower), fdPath(ov.src.upperFD), fdPath(ov.src.workFD), ov.src.volatile)
		unix.Close(lower)
		if ov.err == nil {
			ov.err = unix.Fstat(ov.src.upperFD, &ov.parent)
		}
	}
	// Open the members, and the read-only sources in the upper directories.
	for _, s := range o.sources {
		var ov *overlay
		name := s.name
		switch {
		case s.upper != "" && !s.readOnly:
			ov, name = byUpper[s.upper], filepath.Base(filepath.Clean(s.src))
		case s.readOnly && !s.device && s.parentFD >= 0:
			var st unix.Stat_t
			if unix.Fstat(s.parentFD, &st) != nil {
				continue
			}
			for _, c := range overlays {
				if c.stage != "" && c.err == nil && c.parent.Dev == st.Dev && c.parent.Ino == st.Ino {
					ov = c
				}
			}
		}
		if ov == nil || ov.stage == "" {
			continue
		}
		if ov.err != nil {
			s.stageErr = ov.err
			continue
		}
		s.stagedFD, s.stageErr = m.staging.open(ov.stage+"/"+name, false, s.dir)
		if s.stageErr == nil {
			o.keep(s.stagedFD)
		}
	}
	return nil
}

// writableAbove returns the writable directory with an overlay whose
// target is the deepest above t's, or nil.
func writableAbove(sources []*source, t *source) *source {
	var w *source
	for _, s := range sources {
		if s.lower == "" || s == t || !strings.HasPrefix(t.target, s.target+"/") {
			continue
		}
		if w == nil || len(s.target) > len(w.target) {
			w = s
		}
	}
	return w
}

// mountWritable mounts the writable directory s: bound from its shared
// overlay, or through an overlay of its own whose lower layer holds the
// mount points below it.
func (m *overlayMounter) mountWritable(s *source) error {
	if s.upper != "" {
		if s.stageErr != nil || s.stagedFD < 0 {
			err := s.stageErr
			if err == nil {
				err = errors.New("not opened in its overlay")
			}
			m.warn(s, err)
			return m.r.bind(s)
		}
		var st unix.Stat_t
		if err := unix.Fstat(s.stagedFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			m.warn(s, errors.New("it changed while the sandbox was set up"))
			return m.r.bind(s)
		}
		staged := *s
		staged.fd = s.stagedFD
		return m.r.bind(&staged)
	}
	fd, err := m.r.open(s.target, true, true)
	if err != nil {
		return fmt.Errorf("sandbox: mounting %s on %s: making mount point: %w", s.src, s.target, err)
	}
	defer unix.Close(fd)
	lower, err := m.r.open(s.lower, false, true)
	if err != nil {
		return fmt.Errorf("sandbox: opening %s: %w", s.lower, err)
	}
	defer unix.Close(lower)
	if err := mountUpper(fdPath(fd), fdPath(lower), fdPath(s.fd), fdPath(s.workFD), s.volatile); err != nil {
		m.warn(s, err)
		return m.r.bind(s)
	}
	return nil
}

// mountUpper mounts on target a writable overlay of upper, over lower,
// with its work directory work; volatile if volatile (volatile.go).
//
// Its extended attributes are user.overlay.* (userxattr, Linux 5.11 and
// later): mounted in the sandbox's user namespace, the overlay cannot
// set trusted.* ones on the host's disk, and each mount otherwise tried,
// failed and said so in the kernel's log (three lines a build). The
// layers it reads them from are hephc's own: the upper directories made
// for this build and the lower one in the sandbox's tmpfs; the build
// cannot set them through the overlay. A kernel that refuses an option
// (EINVAL) gets the overlay without it (mountFirst).
func mountUpper(target, lower, upper, work string, volatile bool) error {
	opts := overlayOptions + fmt.Sprintf(",lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	mount := func(opts string) error {
		return unix.Mount("heph", target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts)
	}
	if volatile {
		return mountFirst(opts, []string{",userxattr,volatile", ",volatile", ",userxattr", ""}, mount)
	}
	return mountFirst(opts, []string{",userxattr", ""}, mount)
}

// mountFirst mounts with opts and each of extras in turn until the
// kernel does not refuse them as unknown (EINVAL).
func mountFirst(opts string, extras []string, mount func(opts string) error) error {
	var err error
	for _, x := range extras {
		if err = mount(opts + x); !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	return err
}
