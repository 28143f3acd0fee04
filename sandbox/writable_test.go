package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMountFirst: a kernel that refuses an overlay option (EINVAL:
// volatile before Linux 5.10, userxattr before 5.11) gets the overlay
// without it; other errors are not retried.
func TestMountFirst(t *testing.T) {
	extras := []string{",userxattr,volatile", ",volatile", ",userxattr", ""}
	for _, c := range []struct {
		name    string
		refuse  map[string]error // what a mount with these options returns
		want    []string
		wantErr error
	}{
		{"accepted", nil, []string{"o,userxattr,volatile"}, nil},
		{"no userxattr", map[string]error{"o,userxattr,volatile": unix.EINVAL, "o,userxattr": unix.EINVAL},
			[]string{"o,userxattr,volatile", "o,volatile"}, nil},
		{"neither", map[string]error{"o,userxattr,volatile": unix.EINVAL, "o,volatile": unix.EINVAL, "o,userxattr": unix.EINVAL},
			[]string{"o,userxattr,volatile", "o,volatile", "o,userxattr", "o"}, nil},
		{"other error", map[string]error{"o,userxattr,volatile": unix.EPERM}, []string{"o,userxattr,volatile"}, unix.EPERM},
	} {
		t.Run(c.name, func(t *testing.T) {
			var tried []string
			err := mountFirst("o", extras, func(opts string) error {
				tried = append(tried, opts)
				return c.refuse[opts]
			})
			if !errors.Is(err, c.wantErr) || err != nil && c.wantErr == nil {
				t.Errorf("got %v, want %v", err, c.wantErr)
			}
			if strings.Join(tried, " ") != strings.Join(c.want, " ") {
				t.Errorf("mounted with %q, want %q", tried, c.want)
			}
		})
	}
}

// TestWritableOverlayVolatile: on Linux 5.10 and later a writable
// directory's overlay is volatile where volatileHelps says so (its end
// does not sync the host's disk), and not elsewhere; either way what the
// build writes reaches the host, and the work directory, with the
// volatile marker overlayfs leaves in it, is removed.
func TestWritableOverlayVolatile(t *testing.T) {
	var u unix.Utsname
	unix.Uname(&u)
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil || major < 5 || major == 5 && minor < 10 {
		skipOutsideCI(t, "kernel %s has no volatile overlays", unix.ByteSliceToString(u.Release[:]))
	}
	saved := volatileHelps
	t.Cleanup(func() { volatileHelps = saved })
	for _, volatile := range []bool{true, false} {
		t.Run(fmt.Sprint("volatile=", volatile), func(t *testing.T) {
			volatileHelps = func(string) bool { return volatile }
			tmp := t.TempDir()
			for _, d := range []string{"store", "build"} {
				if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			res := runProbes(t, Spec{Mounts: []Mount{
				{Source: filepath.Join(tmp, "store"), Target: "/heph/store", Writable: true},
				{Source: filepath.Join(tmp, "build"), Target: "/build", Writable: true},
			}}, "write=/heph/store/out", "read=/proc/self/mountinfo")
			wantOK(t, res, "write=/heph/store/out", "")
			mi := res["read=/proc/self/mountinfo"]
			found := false
			for _, line := range strings.Split(mi, "\n") {
				f := strings.Fields(line)
				// ",volatile", or "fsync=volatile" since Linux 6.6.
				if len(f) > 4 && (f[4] == "/heph/store" || f[4] == "/build") {
					found = true
					if !strings.Contains(line, " - overlay ") || strings.Contains(line, "volatile") != volatile || !strings.Contains(line, "userxattr") {
						t.Errorf("writable mount, want an overlay with userxattr, volatile %v: %s", volatile, line)
					}
				}
			}
			if !found {
				t.Fatalf("no writable mount in mountinfo:\n%s", mi)
			}
			if b, err := os.ReadFile(filepath.Join(tmp, "store/out")); err != nil || string(b) != "written inside\n" {
				t.Errorf("$out on the host: got %q, %v", b, err)
			}
			ents, _ := os.ReadDir(tmp)
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".hephc-work") {
					t.Errorf("work directory %s left behind", e.Name())
				}
			}
		})
	}
}

// TestWorkDirReused: with Spec.WorkDir, build after build in the same
// directories (realize's pool) gets its writable overlay (not a bind
// showing the host path) from a work directory in WorkDir, which is left
// there empty and the caller's once torn down, with no sibling made; a volatile
// overlay's marker, which the next mount would refuse, never stays, nor
// does one a killed build left.
func TestWorkDirReused(t *testing.T) {
	saved := volatileHelps
	t.Cleanup(func() { volatileHelps = saved })
	for _, volatile := range []bool{true, false} {
		t.Run(fmt.Sprint("volatile=", volatile), func(t *testing.T) {
			volatileHelps = func(string) bool { return volatile }
			tmp := t.TempDir()
			for _, d := range []string{"u", "u/store", "u/build", "w", "w/0/work/incompat/volatile"} {
				if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			work := filepath.Join(tmp, "w")
			for i := range 3 {
				out := fmt.Sprintf("/heph/store/out%d", i)
				res := runProbes(t, Spec{WorkDir: work, Mounts: []Mount{
					{Source: filepath.Join(tmp, "u/store"), Target: "/heph/store", Writable: true},
					{Source: filepath.Join(tmp, "u/build"), Target: "/build", Writable: true},
				}}, "write="+out, "read=/proc/self/mountinfo")
				wantOK(t, res, "write="+out, "")
				if mi := res["read=/proc/self/mountinfo"]; !strings.Contains(mi, "/heph/store rw,") || strings.Contains(mi, tmp) {
					t.Errorf("build %d: $out is not an overlay hiding %s:\n%s", i, tmp, mi)
				}
				if _, err := os.Stat(filepath.Join(tmp, "u/store", filepath.Base(out))); err != nil {
					t.Errorf("build %d: $out on the host: %v", i, err)
				}
				// The work directory is emptied once the init has exited,
				// which Run does not wait for (releaseLater); the next Run
				// with it does.
				WaitTeardowns()
				ents, err := os.ReadDir(filepath.Join(work, "0"))
				if err != nil || len(ents) != 0 {
					t.Errorf("build %d: work directory: %v left, %v", i, ents, err)
				}
				var st unix.Stat_t
				if err := unix.Stat(filepath.Join(work, "0"), &st); err != nil || int(st.Uid) != os.Getuid() {
					t.Errorf("build %d: work directory owned by %d, want %d (%v)", i, st.Uid, os.Getuid(), err)
				}
				if ents, _ := os.ReadDir(tmp); len(ents) != 2 {
					t.Errorf("build %d: %v beside u and w", i, ents)
				}
			}
		})
	}
}

// TestExt4Journaled: an ext4 file system has a journal when its options
// say how data goes through it.
func TestExt4Journaled(t *testing.T) {
	journaled := "rw\nbsddf\nnodiscard\njournal_checksum\nbarrier\ndata=ordered\ninode_readahead_blks=32\n"
	none := "rw\nbsddf\ndiscard\nnojournal_checksum\nbarrier\ncommit=5\ninode_readahead_blks=32\n"
	if !ext4Journaled(journaled) || ext4Journaled(none) {
		t.Errorf("ext4Journaled: %v for a journal, %v for none", ext4Journaled(journaled), ext4Journaled(none))
	}
	// The test's directory, if on ext4: jbd2 lists the journal, if any.
	dir := t.TempDir()
	var fs unix.Statfs_t
	var st unix.Stat_t
	if unix.Statfs(dir, &fs) != nil || fs.Type != unix.EXT4_SUPER_MAGIC || unix.Stat(dir, &st) != nil {
		return
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		skipOutsideCI(t, "no block device for the test's directory: %v", err)
	}
	_, err = os.Stat("/proc/fs/jbd2/" + filepath.Base(link) + "-8")
	if got, want := ext4WithoutJournal(dir, st.Dev), err != nil; got != want {
		t.Errorf("ext4WithoutJournal(%s) = %v, want %v (/proc/fs/jbd2: %v)", dir, got, want, err)
	}
}
