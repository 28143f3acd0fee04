package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DirName is the directory of a store's directory that holds the
// attestations of its paths.
const DirName = "attestations"

// Dir is where a store keeps attestations, as files (so that the store's
// database can be rebuilt from disk):
//
//	<store dir>/attestations/<hash>-<name>/<sha256 of the envelope>.json
//
// An envelope's file name is the sha256 of its bytes, so adding the same
// envelope twice keeps one file, and a file changed on disk is noticed.
type Dir string

// StoreDir returns the attestations directory of the store in dir.
func StoreDir(dir string) Dir { return Dir(filepath.Join(dir, DirName)) }

// checkBase reports whether base may be a store path's base name here.
func checkBase(base string) error {
	if base == "" || base[0] == '.' || strings.ContainsAny(base, "/\x00") {
		return fmt.Errorf("%q is not a store path's base name", base)
	}
	return nil
}

// Add keeps envelope b for the path whose base name is base, atomically
// (a temporary file, synced, renamed into place). It returns the file and
// whether it is new.
func (d Dir) Add(base string, b []byte) (file string, added bool, err error) {
	if err := checkBase(base); err != nil {
		return "", false, fmt.Errorf("keeping attestation: %w", err)
	}
	if len(b) > MaxEnvelopeSize {
		return "", false, fmt.Errorf("keeping attestation of %s: %d bytes, larger than %d", base, len(b), MaxEnvelopeSize)
	}
	dir := filepath.Join(string(d), base)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("keeping attestation of %s: %w", base, err)
	}
	sum := sha256.Sum256(b)
	file = filepath.Join(dir, hex.EncodeToString(sum[:])+".json")
	if _, err := os.Lstat(file); err == nil {
		return file, false, nil
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", false, fmt.Errorf("keeping attestation of %s: %w", base, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o444)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return "", false, fmt.Errorf("keeping attestation of %s: %w", base, err)
	}
	return file, true, nil
}

// List returns the envelopes kept for base, ordered by file name. A file
// whose bytes do not hash to its name is an error: the directory was
// tampered with.
func (d Dir) List(base string) ([][]byte, error) {
	if err := checkBase(base); err != nil {
		return nil, fmt.Errorf("listing attestations: %w", err)
	}
	dir := filepath.Join(string(d), base)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing attestations of %s: %w", base, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var out [][]byte
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		b, err := readCapped(filepath.Join(dir, e.Name()), MaxEnvelopeSize)
		if err != nil {
			return nil, fmt.Errorf("listing attestations of %s: %w", base, err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != name {
			return nil, fmt.Errorf("attestation %s of %s: its bytes hash to sha256:%x, not to its name", e.Name(), base, sum)
		}
		out = append(out, b)
	}
	return out, nil
}

// Remove drops every attestation of base (when the path is deleted).
func (d Dir) Remove(base string) error {
	if err := checkBase(base); err != nil {
		return fmt.Errorf("removing attestations: %w", err)
	}
	return os.RemoveAll(filepath.Join(string(d), base))
}

// readCapped reads the regular file at name, refusing one larger than max.
func readCapped(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, max)
	}
	return b, nil
}
