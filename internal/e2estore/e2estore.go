// Package e2estore lets the end-to-end tests of several packages that one
// go test command runs share one realize of the example system.
//
// cmd/hephc's tests realize system.cue once into a store of their own
// (systemStore); builder's TestImageIsReproducible builds the server image
// from nothing and compares it with a second build from nothing. When both
// run in one go test command (CI's `go test ./...`), that second build is
// the one cmd/hephc's realize already did: the realizing test binary
// announces its store in a directory every test binary of the same go
// command finds (Dir: keyed by the repository and the go command's
// process, their parent), and the other waits for it there instead of
// building the same image again. A test binary run alone finds nothing
// and builds for itself.
//
// The directory's lock file orders them: the owner holds it exclusively
// while it realizes, shared while its tests use the store, and
// exclusively again to remove the directory at its end, so a reader that
// holds it shared is never left with a removed store.
package e2estore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Dir is the rendezvous directory of the test binaries that the go
// command running this one runs for the repository at repo.
func Dir(repo string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", repo, os.Getppid()))
	return filepath.Join(os.TempDir(), "hephc-e2e-run-"+hex.EncodeToString(sum[:8]))
}

const (
	lockFile  = "lock"
	announced = "realizing" // the owner is realizing into store
	ready     = "ready"     // its realize succeeded, from an empty store
	storeDir  = "store"
)

// Owner is the test binary that realizes the system into the shared
// directory's store.
type Owner struct {
	dir  string
	lock *os.File
}

// Announce makes the directory for repo, takes its lock exclusively and
// says a realize is under way. The store to realize into is Store().
func Announce(repo string) (*Owner, error) {
	dir := Dir(repo)
	if err := os.MkdirAll(dir, 0o700); err != nil { // as os.MkdirTemp
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	// Held already: another test binary of this go command owns it.
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s is another test binary's: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, announced), nil, 0o644); err != nil {
		lock.Close()
		return nil, err
	}
	return &Owner{dir: dir, lock: lock}, nil
}

// Store is the store the owner realizes into.
func (o *Owner) Store() string { return filepath.Join(o.dir, storeDir) }

// Done ends the realize: when ok (it succeeded from an empty store),
// readers may compare with the store. The lock turns shared, so readers
// that waited go on.
func (o *Owner) Done(ok bool) error {
	if ok {
		if err := os.WriteFile(filepath.Join(o.dir, ready), nil, 0o644); err != nil {
			return err
		}
	}
	return unix.Flock(int(o.lock.Fd()), unix.LOCK_SH)
}

// Close waits until no reader holds the directory, then removes it with
// the store (whose paths are read-only).
func (o *Owner) Close() error {
	defer o.lock.Close()
	if err := unix.Flock(int(o.lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	os.Remove(filepath.Join(o.dir, ready))
	filepath.WalkDir(o.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(o.dir)
}

// Reader holds a store another test binary realized, until Release.
type Reader struct {
	Store string
	lock  *os.File
}

// ErrNone says no test binary of this go command realizes the system.
var ErrNone = errors.New("no test binary of this go command realizes the system")

// Wait finds the store another test binary of this go command realizes
// the system into and waits until its realize ends. It returns ErrNone
// when there is none, or when its realize failed or did not start from an
// empty store; else the reader holds the store until Release.
func Wait(repo string) (*Reader, error) {
	dir := Dir(repo)
	if _, err := os.Stat(filepath.Join(dir, announced)); err != nil {
		return nil, ErrNone
	}
	lock, err := os.Open(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, ErrNone
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH); err != nil {
		lock.Close()
		return nil, err
	}
	// The owner may have ended meanwhile and removed the directory.
	if _, err := os.Stat(filepath.Join(dir, ready)); err != nil {
		lock.Close()
		return nil, ErrNone
	}
	return &Reader{Store: filepath.Join(dir, storeDir), lock: lock}, nil
}

// Release lets the owner remove the store.
func (r *Reader) Release() { r.lock.Close() }
