package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// slotSpec returns a spec whose builds run in the keeper of the slot
// dir, after checking that this machine gives them one.
func slotSpec(t *testing.T, dir string) Spec {
	t.Helper()
	s := Spec{WorkDir: dir}
	if !keeperWanted(&s) {
		skipOutsideCI(t, "no slot init here (kernel without thread pidfds, or %s=off)", KeeperEnv)
	}
	return s
}

// TestKeeperBuildsAlike runs builds one after another in one slot's init
// and checks each sees what a build under an init of its own sees, and
// nothing of the builds before it.
func TestKeeperBuildsAlike(t *testing.T) {
	work := t.TempDir()
	for i := 0; i < 3; i++ {
		s := slotSpec(t, work)
		res := runProbes(t, s, "pids", "write=/tmp/mark", "stat=/tmp/mark", "hostname", "ids", "readlink=/proc/self", "read=/proc/self/cgroup")
		t.Logf("build %d: %v", i, res)
		wantOK(t, res, "readlink=/proc/self", "100")
		wantOK(t, res, "hostname", "localhost")
	}
	keepers.mu.Lock()
	n := len(keepers.idle)
	keepers.mu.Unlock()
	if n != 1 {
		t.Errorf("%d idle keepers, want 1", n)
	}
	WaitTeardowns()
	if _, err := os.Stat(filepath.Join(work, "x")); err == nil || !strings.Contains(err.Error(), "no such") {
		t.Log(err)
	}
}
