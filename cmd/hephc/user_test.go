package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRealizeAsOrdinaryUser runs hephc as uid 65534 (nobody), with its own
// store: the sandbox must work with an unprivileged user namespace and
// the store must be usable without root.
func TestRealizeAsOrdinaryUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the tests already run as an ordinary user: every realize test covers this")
	}
	dir, err := os.MkdirTemp("", "hephc-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// This test binary is hephc when it is called hephc (testscript.Main).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	hephc := filepath.Join(dir, "hephc")
	if err := os.WriteFile(hephc, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeTool(dir); err != nil {
		t.Fatal(err)
	}
	cue := "package system\n\nimport \"hephc.dev/heph\"\n\nhello: heph.#Derivation & {\n\tname: \"hello\"\n\tbuilder: \"@{tool}\"\n\targs: [\"file=greeting=hello\"]\n\tinputs: \"tool\": tool\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "system.cue"), []byte(cue), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "tool.cue"), 0o644)
	cmd := exec.Command(hephc, "--store", filepath.Join(dir, "store"), "realize", "-A", "hello", ".")
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "HEPHC_CACHE=" + filepath.Join(dir, "cache"), "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hephc realize as nobody: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "result", "greeting"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("result/greeting: got %q (%v), want hello\n%s", got, err, out)
	}
	var st syscall.Stat_t
	target, _ := filepath.EvalSymlinks(filepath.Join(dir, "result"))
	if err := syscall.Stat(target, &st); err != nil || st.Uid != 65534 {
		t.Errorf("the output is owned by uid %d (%v), want 65534", st.Uid, err)
	}
	if !strings.Contains(string(out), "built 1") {
		t.Errorf("got output %s, want one build", out)
	}
}
