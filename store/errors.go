package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
)

// RebuildCommand is the command that rebuilds a store's database from the
// records on disk (RebuildDB); errors about a lost or broken database
// name it.
const RebuildCommand = "hephc verify --rebuild-db"

// DatabaseError is a store whose database cannot be trusted: missing or
// empty beside a store that holds paths (an empty store is what GC would
// make of it), or corrupt. The store's own records (RebuildDB) can
// rebuild it.
type DatabaseError struct {
	// DB is the database file.
	DB string
	// Problem says what is wrong: "is missing", "is empty", "is corrupt".
	Problem string
	// Err is SQLite's error, for a corrupt database.
	Err error
}

func (e *DatabaseError) Error() string {
	msg := fmt.Sprintf("the store database %s %s", e.DB, e.Problem)
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg + fmt.Sprintf("; the store's records on disk can rebuild it: run `%s --store %s` (the old database is kept aside)", RebuildCommand, filepath.Dir(e.DB))
}

func (e *DatabaseError) Unwrap() error { return e.Err }

// NoSpaceError is a store operation that failed because the store's file
// system is full: a write got ENOSPC (or EDQUOT), or SQLite found the
// disk full.
type NoSpaceError struct {
	// Dir is the store's directory; Free the bytes available to this
	// user on its file system when the error was seen, -1 if unknown.
	Dir  string
	Free int64
	Err  error
}

func (e *NoSpaceError) Error() string {
	free := ""
	if e.Free >= 0 {
		free = fmt.Sprintf(", %s free", FormatSize(e.Free))
	}
	return fmt.Sprintf("no space left on the store's file system (%s: ENOSPC%s): %v", e.Dir, free, e.Err)
}

func (e *NoSpaceError) Unwrap() error { return e.Err }

// SQLite's primary result codes that say what is wrong with the file.
const (
	sqliteCorrupt = 11 // SQLITE_CORRUPT: "database disk image is malformed"
	sqliteFull    = 13 // SQLITE_FULL: "database or disk is full"
	sqliteNotADB  = 26 // SQLITE_NOTADB: "file is not a database"
)

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// isNoSpace reports whether err says the file system is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || sqliteCode(err) == sqliteFull
}

// classify turns an error that says the database is corrupt or the disk
// full into a *DatabaseError or *NoSpaceError, keeping its text; any other
// error, nil included, is returned as it is.
func (s *Store) classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		de *DatabaseError
		ne *NoSpaceError
	)
	if errors.As(err, &de) || errors.As(err, &ne) {
		return err
	}
	switch c := sqliteCode(err); {
	case c == sqliteCorrupt || c == sqliteNotADB:
		return &DatabaseError{DB: filepath.Join(s.Dir, DBFile), Problem: "is corrupt", Err: err}
	case isNoSpace(err):
		return &NoSpaceError{Dir: s.Dir, Free: s.free(), Err: err}
	}
	return err
}

// annotate classifies *errp (classify), for deferred use.
func (s *Store) annotate(errp *error) { *errp = s.classify(*errp) }

// free returns the bytes available to this process on the store's file
// system (root may use the blocks reserved for it), -1 if statfs fails.
func (s *Store) free() int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(s.Dir, &st); err != nil {
		return -1
	}
	if unix.Geteuid() == 0 {
		return int64(st.Bfree) * st.Bsize
	}
	return int64(st.Bavail) * st.Bsize
}

// lowSpace is how little free space makes a failed build a *NoSpaceError
// (SpaceError): less than a build's smallest write of file system
// metadata, so the file system was full when the build failed.
const lowSpace = 64 << 10

// SpaceError returns err as a *NoSpaceError if it says the disk is full,
// if one of log (the end of a failed build's log) says a write to the
// build's output or directory (Dir or /build, both on the store's file
// system; not its private /tmp) found the disk full, or if the store's
// file system is (nearly) full now: a build that filled the disk has its
// ENOSPC only in its log, if it could write that. Call it before removing
// what the failed operation left. Any other error is returned as it is.
func (s *Store) SpaceError(err error, log ...string) error {
	if err == nil {
		return nil
	}
	if err = s.classify(err); errors.As(err, new(*NoSpaceError)) {
		return err
	}
	for _, line := range log {
		full := strings.Contains(line, syscall.ENOSPC.Error()) || strings.Contains(line, syscall.EDQUOT.Error())
		if full && (strings.Contains(line, Dir+"/") || strings.Contains(line, " /build/")) {
			return &NoSpaceError{Dir: s.Dir, Free: s.free(), Err: err}
		}
	}
	if free := s.free(); free >= 0 && free < lowSpace {
		return &NoSpaceError{Dir: s.Dir, Free: free, Err: err}
	}
	return err
}
