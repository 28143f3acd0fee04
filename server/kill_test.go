package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/trust"
)

// killChild is set in the child process that TestKilledProcess starts:
// the step it stops at, waiting to be killed.
var killChild = os.Getenv("HEPHC_SERVER_KILL_AT")

// TestKilledProcess kills (SIGKILL) a process in the middle of a
// publish, and of a promotion, between the writing of the rows and the
// commit; the data directory then holds the channels as they were, and
// their signed metadata verifies.
func TestKilledProcess(t *testing.T) {
	if killChild != "" {
		killedChild(t)
		return
	}
	for _, step := range []string{"publish:channel", "move:stable"} {
		t.Run(step, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "server")
			marker := filepath.Join(t.TempDir(), "stopped")
			cmd := exec.Command(os.Args[0], "-test.run=^TestKilledProcess$", "-test.count=1")
			// The child is killed before its own t.TempDir is removed:
			// its temporary files go under this test's.
			cmd.Env = append(os.Environ(), "HEPHC_SERVER_KILL_AT="+step, "HEPHC_SERVER_DIR="+dir, "HEPHC_SERVER_MARKER="+marker, "TMPDIR="+t.TempDir())
			out, err := os.CreateTemp(t.TempDir(), "child")
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(2 * time.Minute)
			for {
				if _, err := os.Stat(marker); err == nil {
					break
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					b, _ := os.ReadFile(out.Name())
					t.Fatalf("the child never reached %s:\n%s", step, b)
				}
				time.Sleep(20 * time.Millisecond)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()

			e := &env{t: t, dir: dir, clock: &fakeClock{t: day0}, reg: &memRegistry{}, tests: &fakeTests{}}
			e.cfg = Config{Trust: []*trust.Policy{policy(t)}, Registry: e.reg, Tests: e.tests}
			if step == "move:stable" {
				e.at(8 * day) // the child re-signed then
			}
			e.open()
			root, err := os.ReadFile(filepath.Join(dir, RootFile))
			if err != nil {
				t.Fatal(err)
			}
			e.verify(channel.NewVerifier(channel.RootHash(root), e.clock.Now))
			switch step {
			case "publish:channel":
				if got := e.channel(channel.Testing); len(got) != 0 {
					t.Fatalf("testing %v after a killed publish", got)
				}
				var n int
				e.srv.db.QueryRow(`SELECT COUNT(*) FROM packages`).Scan(&n)
				if n != 0 {
					t.Fatalf("%d packages after a killed publish", n)
				}
			case "move:stable":
				if got := e.channel(channel.Testing); !slices.Equal(got, []string{"age 1.0"}) {
					t.Fatalf("testing %v after a killed promotion", got)
				}
				if got := e.channel(channel.Stable); len(got) != 0 {
					t.Fatalf("stable %v after a killed promotion", got)
				}
			}
		})
	}
}

// killedChild publishes (and, for a promotion step, promotes) in the
// data directory it was given, and stops at the step, for the parent to
// kill it.
func killedChild(t *testing.T) {
	e := newEnvAt(t, os.Getenv("HEPHC_SERVER_DIR"))
	e.srv.fault = func(s string) error {
		if s == killChild {
			os.WriteFile(os.Getenv("HEPHC_SERVER_MARKER"), nil, 0o644)
			select {} // killed here
		}
		return nil
	}
	age := e.add("age", "v1")
	if err := e.publish("age", "1.0", age); err != nil {
		t.Fatal(err)
	}
	e.at(8 * day)
	e.srv.Tick(ctx)
	t.Fatalf("never stopped at %s", killChild)
}
