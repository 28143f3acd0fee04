package fstree

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

const removeAsUserEnv = "HEPHC_TEST_REMOVE_TREE"

// TestRemoveTreeAsOrdinaryUser removes, as an ordinary user, a tree of
// directories its owner may not write, read or enter: what a canonical
// output and a failed build leave. As root it runs itself again as uid
// 65534 (nobody); root needs none of the permissions RemoveTree adds.
func TestRemoveTreeAsOrdinaryUser(t *testing.T) {
	if p := os.Getenv(removeAsUserEnv); p != "" {
		if err := RemoveTree(p); err != nil {
			t.Fatal(err)
		}
		return
	}
	// Not t.TempDir: nobody must reach it.
	tmp, err := os.MkdirTemp("", "hephc-fstree-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(tmp, "tree")
	makeTree(t, root,
		file("a", "1"), execFile("sub/b", "2"), dir("sub/empty"), file("sub/deep/c", "3"),
		dir("noread/inner"), file("noread/inner/x", "4"),
		dir("nosearch/inner"), file("nosearch/y", "5"),
		dir("locked/inner"), file("locked/inner/z", "6"),
	)
	if err := Canonicalize(root); err != nil {
		t.Fatal(err)
	}
	for p, m := range map[string]os.FileMode{"noread": 0o100, "nosearch": 0o400, "locked": 0} {
		if err := os.Chmod(filepath.Join(root, p), m); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getuid() != 0 {
		if err := RemoveTree(root); err != nil {
			t.Fatal(err)
		}
	} else {
		err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, 65534, 65534)
		})
		if err != nil {
			t.Fatal(err)
		}
		self, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		exe := filepath.Join(tmp, "fstree.test")
		if err := os.WriteFile(exe, self, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run=^TestRemoveTreeAsOrdinaryUser$")
		cmd.Env = []string{removeAsUserEnv + "=" + root, "HOME=" + tmp}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RemoveTree as nobody: %v\n%s", err, out)
		}
	}
	if _, err := os.Lstat(root); !os.IsNotExist(err) {
		t.Errorf("after RemoveTree, Lstat: %v, want not-exist", err)
	}
}
