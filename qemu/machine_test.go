package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQEMU is a shell script standing in for QEMU: a guest whose console
// is its stdio.
func fakeQEMU(t *testing.T, body string) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestConsole drives a fake guest's console: lines, a prompt without a
// line end, typing a command, the transcript, and the end.
func TestConsole(t *testing.T) {
	exe := fakeQEMU(t, `echo "booting $*"; echo HEPH-SELFTEST OK; printf '# '; read cmd; echo "ran: $cmd"; echo bye`)
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := Start(ctx, exe, []string{"-m", "64"}, StartOptions{Transcript: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	con := m.Console()
	if l, err := con.ReadLine(ctx); err != nil || l != "booting -m 64" {
		t.Fatalf("ReadLine: %q, %v", l, err)
	}
	if l, err := con.Expect(ctx, "HEPH-SELFTEST OK"); err != nil || l != "HEPH-SELFTEST OK" {
		t.Fatalf("Expect: %q, %v", l, err)
	}
	if _, err := con.Expect(ctx, "# "); err != nil {
		t.Fatal(err)
	}
	if err := con.WriteLine("ls /bin"); err != nil {
		t.Fatal(err)
	}
	if l, err := con.ReadLine(ctx); err != nil || l != "ran: ls /bin" {
		t.Fatalf("after WriteLine: %q, %v", l, err)
	}
	_, err = con.Expect(ctx, "never")
	if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), `before the console printed "never"`) || !strings.Contains(err.Error(), "  | bye") {
		t.Fatalf("Expect after the end: %v", err)
	}
	if err := m.Wait(); err != nil {
		t.Fatal(err)
	}
	if want := "booting -m 64\nHEPH-SELFTEST OK\n# ran: ls /bin\nbye\n"; log.String() != want {
		t.Errorf("transcript %q, want %q", log.String(), want)
	}
}

// TestConsoleDeadline: Expect gives up when its context ends, and Kill
// stops a guest that runs on.
func TestConsoleDeadline(t *testing.T) {
	exe := fakeQEMU(t, `echo up; exec sleep 60`)
	m, err := Start(context.Background(), exe, nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = m.Console().Expect(ctx, "login:")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "  | up") {
		t.Fatalf("Expect: %v", err)
	}
	m.Kill()
	if err := m.Wait(); err == nil {
		t.Error("a killed QEMU exited cleanly")
	}
}

func TestStartMissing(t *testing.T) {
	_, err := Start(context.Background(), "/nonexistent/qemu", nil, StartOptions{})
	if err == nil || !strings.Contains(err.Error(), "apt-get install qemu-system-x86") {
		t.Fatalf("got %v", err)
	}
}
