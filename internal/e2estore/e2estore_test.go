package e2estore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A reader finds nothing before an owner announces; once announced it
// waits for the realize, gets the store when it succeeded, and the owner's
// Close waits for the reader's Release before it removes the store.
func TestOwnerAndReader(t *testing.T) {
	repo := t.TempDir() // a key of its own
	if _, err := Wait(repo); !errors.Is(err, ErrNone) {
		t.Fatalf("Wait before any owner: %v, want ErrNone", err)
	}
	o, err := Announce(repo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Announce(repo); err == nil {
		t.Fatal("a second owner announced the same directory")
	}
	if err := os.MkdirAll(filepath.Join(o.Store(), "store"), 0o555); err != nil {
		t.Fatal(err)
	}
	got := make(chan *Reader)
	go func() {
		r, err := Wait(repo)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-got:
		t.Fatal("the reader went on while the owner realized")
	case <-time.After(100 * time.Millisecond):
	}
	if err := o.Done(true); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r == nil || r.Store != o.Store() {
		t.Fatalf("reader %+v, want the owner's store %s", r, o.Store())
	}
	closed := make(chan error)
	go func() { closed <- o.Close() }()
	select {
	case <-closed:
		t.Fatal("the owner removed the store a reader held")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := os.Stat(r.Store); err != nil {
		t.Fatal(err)
	}
	r.Release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Dir(repo)); !os.IsNotExist(err) {
		t.Errorf("%s left after Close: %v", Dir(repo), err)
	}
	if _, err := Wait(repo); !errors.Is(err, ErrNone) {
		t.Errorf("Wait after Close: %v, want ErrNone", err)
	}
}

// A failed realize is not compared with.
func TestFailedRealize(t *testing.T) {
	repo := t.TempDir()
	o, err := Announce(repo)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Done(false); err != nil {
		t.Fatal(err)
	}
	if _, err := Wait(repo); !errors.Is(err, ErrNone) {
		t.Errorf("Wait after a failed realize: %v, want ErrNone", err)
	}
}
