package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"hephc.dev/hephc/system/hephinit/internal/image"
)

// A capability check exercises what a program of the image is for, not
// only that it starts; it runs when the image carries a program of its
// name (base name of the path) and prints one line, "selftest: NAME: ok"
// or "selftest: NAME: FAIL: why".
type capabilityCheck struct {
	name    string // the capability, as the packages' meta.provides says
	program string // the program that provides it
	run     func(program string) error
}

// checkCapabilities runs the capability checks of the programs progs,
// once per capability, in the order of capabilityChecks, each result with
// its line.
func checkCapabilities(progs []image.Program) []result {
	var results []result
	for _, c := range capabilityChecks {
		for _, p := range progs {
			if filepath.Base(p.Path) != c.program {
				continue
			}
			r := result{name: "capability " + c.name, line: fmt.Sprintf("selftest: %s: ok", c.name)}
			if err := c.run(p.Path); err != nil {
				r.line = fmt.Sprintf("selftest: %s: FAIL: %v", c.name, err)
				r.problem = fmt.Sprintf("%s (%s): %v", c.name, p.Path, err)
			}
			results = append(results, r)
			break
		}
	}
	return results
}

var capabilityChecks = []capabilityCheck{
	{name: "encrypted-containers", program: "gocryptfs", run: func(program string) error {
		return checkContainer(gocryptfs{path: program}, os.TempDir())
	}},
}

// containerTool makes, opens and closes encrypted containers: a cipher
// directory that holds the files encrypted, opened at a plain directory.
type containerTool interface {
	create(cipher, passfile string) error
	open(cipher, plain, passfile string) error
	close(plain string) error
}

// checkContainer exercises tool in a fresh directory below tmp: it makes
// a passphrase and a wrong one (crypto/rand, here and now: no key is in
// the image), creates a container, opens it, writes a file, closes it,
// checks neither the file's name nor its contents are readable in the
// cipher directory, checks the wrong passphrase is refused, reopens it
// with the passphrase and reads the file back. Everything is removed
// afterwards.
func checkContainer(tool containerTool, tmp string) (err error) {
	dir, err := os.MkdirTemp(tmp, "heph-selftest-container-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cipher, plain := filepath.Join(dir, "cipher"), filepath.Join(dir, "plain")
	for _, d := range []string{cipher, plain} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	key, wrong := filepath.Join(dir, "passphrase"), filepath.Join(dir, "wrong-passphrase")
	for _, f := range []string{key, wrong} {
		if err := os.WriteFile(f, []byte(randomHex(32)+"\n"), 0o600); err != nil {
			return err
		}
	}
	name := "heph-" + randomHex(8)
	secret := []byte("heph selftest " + randomHex(32) + "\n")

	if err := tool.create(cipher, key); err != nil {
		return fmt.Errorf("creating a container: %w", err)
	}
	if err := tool.open(cipher, plain, key); err != nil {
		return fmt.Errorf("opening the new container: %w", err)
	}
	werr := os.WriteFile(filepath.Join(plain, name), secret, 0o600)
	if err := tool.close(plain); err != nil {
		return fmt.Errorf("closing the container: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("writing to the container: %w", werr)
	}
	if _, err := os.Stat(filepath.Join(plain, name)); err == nil {
		return fmt.Errorf("%s is still readable after the container was closed", name)
	}
	if err := notInCiphertext(cipher, name, secret); err != nil {
		return err
	}

	if err := tool.open(cipher, plain, wrong); err == nil {
		tool.close(plain)
		return errors.New("a wrong passphrase opened the container")
	}
	if err := tool.open(cipher, plain, key); err != nil {
		return fmt.Errorf("reopening the container with its passphrase: %w", err)
	}
	got, rerr := os.ReadFile(filepath.Join(plain, name))
	if err := tool.close(plain); err != nil {
		return fmt.Errorf("closing the reopened container: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("reading back from the reopened container: %w", rerr)
	}
	if !bytes.Equal(got, secret) {
		return fmt.Errorf("the reopened container gave back %d other bytes than the %d written", len(got), len(secret))
	}
	return nil
}

// notInCiphertext says whether the name or the contents of the file
// written to the container can be read in its cipher directory.
func notInCiphertext(cipher, name string, secret []byte) error {
	found := 0
	err := filepath.WalkDir(cipher, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		found++
		if strings.Contains(d.Name(), name) {
			return fmt.Errorf("the cipher directory shows the file name in the clear: %s", path)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, secret) {
			return fmt.Errorf("the cipher directory holds the contents in the clear: %s", path)
		}
		return nil
	})
	if err == nil && found <= 1 {
		err = errors.New("the cipher directory is empty after a file was written")
	}
	return err
}

// randomHex is n random bytes from crypto/rand, in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// gocryptfs is the container tool of the base group's gocryptfs. It
// creates containers with a cheap scrypt cost (-scryptn 10): the
// passphrase is random and thrown away. Opening runs gocryptfs as a
// daemon that serves the plain directory through FUSE until it is
// unmounted; it returns once the mount is there or has failed (a wrong
// passphrase exits 12).
type gocryptfs struct{ path string }

func (g gocryptfs) create(cipher, passfile string) error {
	return g.run("-init", "-q", "-scryptn", "10", "-passfile", passfile, cipher)
}

func (g gocryptfs) open(cipher, plain, passfile string) error {
	if err := g.run("-q", "-nosyslog", "-passfile", passfile, cipher, plain); err != nil {
		return err
	}
	if !isMountpoint(plain) {
		return fmt.Errorf("%s exited 0 but %s is not mounted", g.path, plain)
	}
	return nil
}

// close unmounts the plain directory (as root, mount(2) and umount(2)
// need no fusermount); the daemon then exits.
func (g gocryptfs) close(plain string) error {
	if err := syscall.Unmount(plain, 0); err != nil {
		return fmt.Errorf("unmounting %s: %w", plain, err)
	}
	return nil
}

// run runs gocryptfs with args, its output to a file rather than a pipe
// (the daemon it leaves behind keeps its stdout and stderr open), for at
// most a minute.
func (g gocryptfs) run(args ...string) error {
	out, err := os.CreateTemp("", "heph-selftest-gocryptfs-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		msg := strings.Join(strings.Fields(string(b)), " ")
		if msg != "" {
			return fmt.Errorf("gocryptfs %s: %v: %s", strings.Join(args, " "), err, msg)
		}
		return fmt.Errorf("gocryptfs %s: %v", strings.Join(args, " "), err)
	}
	return nil
}

// isMountpoint says whether dir is on another file system than its parent.
func isMountpoint(dir string) bool {
	var d, p syscall.Stat_t
	if syscall.Stat(dir, &d) != nil || syscall.Stat(filepath.Dir(dir), &p) != nil {
		return false
	}
	return d.Dev != p.Dev
}
