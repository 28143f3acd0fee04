package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0017":                         "0.0.0.0:23",
		"00000000000000000000000000000000:0035": "[::]:53",
		"00000000000000000000000001000000:01BB": "[::1]:443",
	} {
		got, err := parseAddr(in)
		if err != nil || got != want {
			t.Errorf("parseAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "XYZ:0017", "0100007F:XYZ", "01:0017"} {
		if got, err := parseAddr(bad); err == nil {
			t.Errorf("parseAddr(%q) = %q, want an error", bad, got)
		}
	}
}

// fakeProc writes net/tcp and net/udp files as the kernel formats them.
func fakeProc(t *testing.T, dir string, tcp, udp []string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "net"), 0o755)
	head := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	write := func(name string, lines []string) {
		if err := os.WriteFile(filepath.Join(dir, "net", name), []byte(head+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tcp", tcp)
	write("udp", udp)
}

func TestListeners(t *testing.T) {
	proc := t.TempDir()
	fakeProc(t, proc, []string{
		"   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0",
		"   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1",
	}, []string{
		"   2: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0000000000000000 0",
	})
	got := listeners(proc)
	want := map[string]bool{"tcp 0.0.0.0:22": true, "udp 0.0.0.0:53": true}
	if len(got) != len(want) || !got["tcp 0.0.0.0:22"] || !got["udp 0.0.0.0:53"] {
		t.Errorf("got %v, want %v (an established connection is no listener)", got, want)
	}
}

// TestReportsChanges watches a directory through two looks: a file
// rewritten with the same size, one added, one removed, a symbolic link
// pointed elsewhere and a new listener are each reported once; nothing
// is reported when nothing changed.
func TestReportsChanges(t *testing.T) {
	dir, proc := t.TempDir(), t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("hostname", "server\n")
	write("gone", "x")
	write("same", "unchanged")
	os.Symlink("same", filepath.Join(dir, "link"))
	fakeProc(t, proc, nil, nil)
	s := &sentinel{roots: []string{dir}, proc: proc}
	before := s.look()
	if alerts := compare(before, s.look()); len(alerts) != 0 {
		t.Fatalf("nothing changed, got alerts %q", alerts)
	}
	write("hostname", "evil!!\n") // same size
	write("added", "y")
	os.Remove(filepath.Join(dir, "gone"))
	os.Remove(filepath.Join(dir, "link"))
	os.Symlink("hostname", filepath.Join(dir, "link"))
	fakeProc(t, proc, []string{"   0: 00000000:0017 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0"}, nil)
	got := compare(before, s.look())
	want := []string{
		"added " + filepath.Join(dir, "added"),
		"modified " + filepath.Join(dir, "hostname"),
		"modified " + filepath.Join(dir, "link"),
		"new listener tcp 0.0.0.0:23",
		"removed " + filepath.Join(dir, "gone"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("got alerts\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRunPrintsAndStops(t *testing.T) {
	dir, proc := t.TempDir(), t.TempDir()
	fakeProc(t, proc, nil, nil)
	os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644)
	var out, errOut bytes.Buffer
	if code := run([]string{"-watch", dir, "-proc", proc, "-interval", "1ms", "-rounds", "2"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	want := "HEPH-SENTINEL: watching 2 files in " + dir + ", and 0 listeners\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	if code := run([]string{"-interval", "0s"}, &out, &errOut); code != 2 {
		t.Errorf("-interval 0s: exit %d, want 2", code)
	}
}
