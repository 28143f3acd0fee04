package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeContainers is a container tool in plain files: open copies the
// cipher directory's files, "decrypted" (XOR with the passphrase's
// SHA-256), into the plain directory; close copies them back and empties
// it. Its flaws are the ones checkContainer must catch.
type fakeContainers struct {
	anyKey    bool // open with any passphrase
	inClear   bool // keep contents and names unencrypted
	keepPlain bool // leave the files in the plain directory on close
	key       []byte
}

func (f *fakeContainers) pass(passfile string) ([]byte, error) {
	b, err := os.ReadFile(passfile)
	sum := sha256.Sum256(b)
	return sum[:], err
}

func (f *fakeContainers) xor(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[i] = b[i]
		if !f.inClear {
			out[i] ^= f.key[i%len(f.key)]
		}
	}
	return out
}

func (f *fakeContainers) create(cipher, passfile string) error {
	key, err := f.pass(passfile)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cipher, "conf"), key, 0o600)
}

func (f *fakeContainers) open(cipher, plain, passfile string) error {
	key, err := f.pass(passfile)
	if err != nil {
		return err
	}
	want, err := os.ReadFile(filepath.Join(cipher, "conf"))
	if err != nil {
		return err
	}
	if !bytes.Equal(key, want) && !f.anyKey {
		return errors.New("password incorrect")
	}
	f.key = key
	files, _ := filepath.Glob(filepath.Join(cipher, "f-*"))
	for _, c := range files {
		name, _ := hex.DecodeString(strings.TrimPrefix(filepath.Base(c), "f-"))
		b, _ := os.ReadFile(c)
		// With a wrong key (anyKey) a name decodes to garbage, which may
		// not be a file name: write it all the same, as a real tool would
		// show garbage, so the open succeeds.
		plainName := string(f.xor(name))
		if strings.ContainsAny(plainName, "/\x00") || plainName == "." || plainName == ".." {
			plainName = hex.EncodeToString([]byte(plainName))
		}
		if err := os.WriteFile(filepath.Join(plain, plainName), f.xor(b), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeContainers) close(plain string) error {
	cipher := filepath.Join(filepath.Dir(plain), "cipher")
	entries, err := os.ReadDir(plain)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(plain, e.Name())
		b, _ := os.ReadFile(p)
		name := "f-" + hex.EncodeToString(f.xor([]byte(e.Name())))
		if f.inClear {
			name = e.Name()
		}
		if err := os.WriteFile(filepath.Join(cipher, name), f.xor(b), 0o600); err != nil {
			return err
		}
		if !f.keepPlain {
			os.Remove(p)
		}
	}
	return nil
}

func TestCheckContainer(t *testing.T) {
	for _, tc := range []struct {
		name string
		tool fakeContainers
		want string
	}{
		{"works", fakeContainers{}, ""},
		{"wrong key accepted", fakeContainers{anyKey: true}, "a wrong passphrase opened the container"},
		{"stored in the clear", fakeContainers{inClear: true}, "the cipher directory shows the file name in the clear"},
		{"not closed", fakeContainers{keepPlain: true}, "is still readable after the container was closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			err := checkContainer(&tc.tool, tmp)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("left %d entries behind in %s", len(left), tmp)
			}
		})
	}
}

// TestContentsInClear: a tool that encrypts the names but not the
// contents is caught too.
func TestContentsInClear(t *testing.T) {
	err := notInCiphertext(writeTree(t, map[string]string{"f-0a1b": "heph selftest abc\n"}), "heph-1234", []byte("heph selftest abc\n"))
	if err == nil || !strings.Contains(err.Error(), "holds the contents in the clear") {
		t.Errorf("got %v", err)
	}
	if err := notInCiphertext(t.TempDir(), "heph-1234", []byte("x")); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("an empty cipher directory: got %v", err)
	}
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCapabilityLines: an image with a gocryptfs program gets its
// encrypted-containers line before the overall one, ok or FAIL.
func TestCapabilityLines(t *testing.T) {
	exe, _ := os.Executable()
	dir := t.TempDir()
	gocryptfs := filepath.Join(dir, "bin", "gocryptfs")
	os.Mkdir(filepath.Dir(gocryptfs), 0o755)
	b, _ := os.ReadFile(exe)
	if err := os.WriteFile(gocryptfs, b, 0o755); err != nil {
		t.Fatal(err)
	}
	saved := capabilityChecks
	defer func() { capabilityChecks = saved }()
	var ran []string
	for _, tc := range []struct {
		err  error
		want string
		code int
	}{
		{nil, "selftest: encrypted-containers: ok\nHEPH-SELFTEST OK\n", 0},
		{errors.New("a wrong passphrase opened the container"),
			"selftest: encrypted-containers: FAIL: a wrong passphrase opened the container\n" +
				"HEPH-SELFTEST FAIL: encrypted-containers (" + gocryptfs + "): a wrong passphrase opened the container\n", 1},
	} {
		capabilityChecks = []capabilityCheck{{name: "encrypted-containers", program: "gocryptfs", run: func(p string) error {
			ran = append(ran, p)
			return tc.err
		}}}
		p, s := writeImage(t, []string{exe, gocryptfs}, nil)
		out, code := selftest(t, p, s)
		if out != tc.want || code != tc.code {
			t.Errorf("got %q, exit %d; want %q, exit %d", out, code, tc.want, tc.code)
		}
	}
	if len(ran) != 2 || ran[0] != gocryptfs {
		t.Errorf("the check ran for %q; want once per selftest, for %s", ran, gocryptfs)
	}
}

// TestGocryptfs runs the check with a real gocryptfs, as the image's
// self-test does: HEPH_TEST_GOCRYPTFS names the binary (e.g. the
// base.packages.gocryptfs output's bin/gocryptfs); it needs root and
// /dev/fuse.
func TestGocryptfs(t *testing.T) {
	bin := os.Getenv("HEPH_TEST_GOCRYPTFS")
	if bin == "" {
		t.Skip("HEPH_TEST_GOCRYPTFS is not set")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatal(err)
	}
	if err := checkContainer(gocryptfs{path: bin}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := checkContainer(gocryptfs{path: os.DevNull}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "creating a container") {
		t.Errorf("with no gocryptfs: got %v", err)
	}
}
