package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeJSON(t *testing.T, file string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// writeImage writes a programs and a services file; the test binary itself is
// a program that exists and runs.
func writeImage(t *testing.T, programs []string, services map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	var progs []map[string]string
	for _, p := range programs {
		progs = append(progs, map[string]string{"path": p, "package": "pkg"})
	}
	svcs := map[string]any{}
	for name, cmd := range services {
		svcs[name] = map[string]any{"command": cmd, "args": []string{}, "restart": "never"}
	}
	return writeJSON(t, filepath.Join(dir, "programs.json"), progs), writeJSON(t, filepath.Join(dir, "services.json"), svcs)
}

func selftest(t *testing.T, programs, services string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-programs", programs, "-services", services}, &stdout, &stderr)
	return stdout.String(), code
}

func TestOK(t *testing.T) {
	exe, _ := os.Executable()
	p, s := writeImage(t, []string{exe}, map[string]string{"selftest": exe})
	out, code := selftest(t, p, s)
	if out != "HEPH-SELFTEST OK\n" || code != 0 {
		t.Errorf("got %q, exit %d; want exactly HEPH-SELFTEST OK, exit 0", out, code)
	}
}

func TestMissingProgram(t *testing.T) {
	p, s := writeImage(t, []string{"/nonexistent/age"}, nil)
	out, code := selftest(t, p, s)
	want := "HEPH-SELFTEST FAIL: program /nonexistent/age of package pkg: /nonexistent/age is missing\n"
	if out != want || code != 1 {
		t.Errorf("got %q, exit %d; want %q, exit 1", out, code, want)
	}
}

func TestMissingServiceBinary(t *testing.T) {
	exe, _ := os.Executable()
	p, s := writeImage(t, []string{exe}, map[string]string{"sshd": "/nonexistent/sshd"})
	out, code := selftest(t, p, s)
	if !strings.HasPrefix(out, "HEPH-SELFTEST FAIL: ") || !strings.Contains(out, "service sshd: /nonexistent/sshd is missing") || code != 1 {
		t.Errorf("got %q, exit %d; want a failure naming service sshd", out, code)
	}
}

func TestNotExecutable(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("\x7fELF not really"), 0o644)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("MZ this is not for us"), 0o755)
	p, s := writeImage(t, []string{plain, garbage}, nil)
	out, code := selftest(t, p, s)
	for _, want := range []string{plain + " is not executable", garbage + " is neither an ELF file nor a #! script"} {
		if !strings.Contains(out, want) {
			t.Errorf("got %q; want it to say %q", out, want)
		}
	}
	if code != 1 || strings.Count(out, "\n") != 1 {
		t.Errorf("got exit %d and %d lines; want exit 1 and one line", code, strings.Count(out, "\n"))
	}
}

func TestNoPrograms(t *testing.T) {
	p, s := writeImage(t, nil, nil)
	if out, code := selftest(t, p, s); !strings.HasPrefix(out, "HEPH-SELFTEST FAIL: the image lists no programs") || code != 1 {
		t.Errorf("got %q, exit %d", out, code)
	}
}

// TestProbeDoesNotRunTheProgram: checking that a program starts must not
// run it (a selftest among the programs would print its line again).
func TestProbeDoesNotRunTheProgram(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	prog := filepath.Join(dir, "prog")
	os.WriteFile(prog, []byte("#!/bin/sh\necho ran > "+marker+"\n"), 0o755)
	p, s := writeImage(t, []string{prog}, nil)
	afterStart = func() { time.Sleep(300 * time.Millisecond) }
	defer func() { afterStart = func() {} }()
	out, code := selftest(t, p, s)
	if out != "HEPH-SELFTEST OK\n" || code != 0 {
		t.Errorf("got %q, exit %d", out, code)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the probe ran the program")
	}
}
