package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The store's records on disk. What the database knows and a rebuilt one
// needs is kept as files beside it too, each written before the database
// is told, so that a lost or corrupt database can be rebuilt from them
// (RebuildDB), as Nix keeps profiles and GC roots as links:
//
//	info/<hash>.json                 a path's registration: content hash, size,
//	                                 files, references, deriver, pin, when;
//	                                 durable before the path is registered
//	drv/<hash>.json                  a derivation the store was asked to
//	                                 realize, and where it was written
//	roots/<hash of link>             a symlink to an indirect root's link
//	generations/<profile>/<n>.json   a generation of a profile
//	generations/<profile>/current    a symlink to the current one's <n>.json
//
// A record is written under a temporary name beside it and renamed into
// place: it is whole or absent. Records are read-only (0444), as the
// paths they describe are.
const (
	infoDir        = "info"
	drvDir         = "drv"
	rootsDir       = "roots"
	generationsDir = "generations"
	currentLink    = "current"
)

// pathRecord is info/<hash>.json, named by the path's hash alone (a
// name may make the base name too long for a file name with a suffix).
type pathRecord struct {
	Path        string   `json:"path"`
	ContentHash string   `json:"contentHash"`
	Size        int64    `json:"size"`
	Files       int      `json:"files"`
	References  []string `json:"references"`
	Deriver     string   `json:"deriver"`
	CA          string   `json:"ca,omitempty"`
	Registered  int64    `json:"registered"`
}

// generationFile is generations/<profile>/<n>.json.
type generationFile struct {
	Profile     string `json:"profile"`
	Number      int    `json:"number"`
	Toplevel    string `json:"toplevel"`
	Created     int64  `json:"created"`
	ConfigHash  string `json:"configHash"`
	Config      string `json:"config"`
	ClosureSize int64  `json:"closureSize"`
}

// writeRecord writes data as the file dir/name, atomically.
func writeRecord(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o444)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// symlinkRecord points the symlink dir/name at target, atomically.
func symlinkRecord(dir, name, target string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// infoFile is where p's record is.
func (s *Store) infoFile(p Path) string {
	return filepath.Join(s.Dir, infoDir, p.Hash.String()+".json")
}

// writePathRecord writes info's record (info/<hash>.json).
func (s *Store) writePathRecord(info *PathInfo) error {
	r := pathRecord{
		Path: info.Path.String(), ContentHash: info.ContentHash.String(), Size: info.Size, Files: info.Files,
		References: []string{}, Deriver: info.Deriver.String(), CA: info.CA, Registered: info.Registered,
	}
	for _, ref := range info.References {
		r.References = append(r.References, ref.String())
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeRecord(filepath.Join(s.Dir, infoDir), info.Path.Hash.String()+".json", append(b, '\n')); err != nil {
		return fmt.Errorf("recording %s: %w", info.Path, err)
	}
	return nil
}

// readPathRecord reads the record in file, which must be named after the
// path it describes.
func readPathRecord(file string) (*PathInfo, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r pathRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	info := &PathInfo{Size: r.Size, Files: r.Files, CA: r.CA, Registered: r.Registered}
	if info.Path, err = ParsePath(r.Path); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if info.Path.Hash.String()+".json" != filepath.Base(file) {
		return nil, fmt.Errorf("reading %s: it records %s", file, info.Path)
	}
	if info.ContentHash, err = ParseOutputHash(r.ContentHash); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if info.Deriver, err = ParseDrvHash(r.Deriver); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	for _, ref := range r.References {
		p, err := ParsePath(ref)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		info.References = append(info.References, p)
	}
	sortPaths(info.References)
	return info, nil
}

// derivationFile is drv/<hash>.json: the derivation as the database
// keeps it (for a fixed-output derivation, unlike its canonical encoding,
// it says how to fetch), which hashes to its name, and where it was last
// written.
type derivationFile struct {
	Derivation json.RawMessage `json:"derivation"`
	Attr       string          `json:"attr,omitempty"`
	Pos        string          `json:"pos,omitempty"`
}

// writeDerivationRecord writes drv/<h>.json: the derivation's JSON form
// b, written at attr and pos.
func (s *Store) writeDerivationRecord(h DrvHash, b []byte, attr, pos string) error {
	rec, err := json.Marshal(derivationFile{Derivation: b, Attr: attr, Pos: pos})
	if err != nil {
		return fmt.Errorf("recording derivation %s: %w", h, err)
	}
	rec = append(rec, '\n')
	dir, name := filepath.Join(s.Dir, drvDir), h.String()+".json"
	if old, err := os.ReadFile(filepath.Join(dir, name)); err == nil && bytes.Equal(old, rec) {
		// Recorded by an earlier realization: a file made and renamed
		// costs more than reading it.
		return nil
	}
	if err := writeRecord(dir, name, rec); err != nil {
		return fmt.Errorf("recording derivation %s: %w", h, err)
	}
	return nil
}

// readDerivationRecord reads drv/<hash>.json: the derivation's JSON form,
// the derivation, where it was written.
func readDerivationRecord(file string) (b []byte, d *Derivation, attr, pos string, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, "", "", err
	}
	var r derivationFile
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, nil, "", "", err
	}
	if d, err = ParseDerivation(r.Derivation); err != nil {
		return nil, nil, "", "", err
	}
	return r.Derivation, d, r.Attr, r.Pos, nil
}

// rootRecordName is the name of link's record in roots/.
func rootRecordName(link string) string { return HashDerivation([]byte(link)).String() }

// writeRootRecord records the indirect root link (absolute).
func (s *Store) writeRootRecord(link string) error {
	if err := symlinkRecord(filepath.Join(s.Dir, rootsDir), rootRecordName(link), link); err != nil {
		return fmt.Errorf("recording the root %s: %w", link, err)
	}
	return nil
}

// removeRootRecord removes link's record.
func (s *Store) removeRootRecord(link string) error {
	err := os.Remove(filepath.Join(s.Dir, rootsDir, rootRecordName(link)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forgetting the root %s: %w", link, err)
	}
	return nil
}

// writeGenerationRecord writes rec's record.
func (s *Store) writeGenerationRecord(rec GenerationRecord) error {
	dir := filepath.Join(s.Dir, generationsDir, rec.Profile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("recording generation %d of %s: %w", rec.Number, rec.Profile, err)
	}
	b, err := json.Marshal(generationFile{
		Profile: rec.Profile, Number: rec.Number, Toplevel: rec.Toplevel.String(), Created: rec.Created,
		ConfigHash: rec.ConfigHash, Config: rec.Config, ClosureSize: rec.ClosureSize,
	})
	if err != nil {
		return err
	}
	if err := writeRecord(dir, strconv.Itoa(rec.Number)+".json", append(b, '\n')); err != nil {
		return fmt.Errorf("recording generation %d of %s: %w", rec.Number, rec.Profile, err)
	}
	return nil
}

// writeCurrentRecord records that generation n is profile's current one.
func (s *Store) writeCurrentRecord(profile string, n int) error {
	dir := filepath.Join(s.Dir, generationsDir, profile)
	if err := symlinkRecord(dir, currentLink, strconv.Itoa(n)+".json"); err != nil {
		return fmt.Errorf("recording generation %d of %s as current: %w", n, profile, err)
	}
	return nil
}

// removeGenerationRecord removes the record of generation id.
func (s *Store) removeGenerationRecord(id GenerationID) error {
	err := os.Remove(filepath.Join(s.Dir, generationsDir, id.Profile, strconv.Itoa(id.Number)+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting the record of generation %d of %s: %w", id.Number, id.Profile, err)
	}
	return nil
}

// readGenerationRecords reads every generation record, by profile and
// number, and each profile's current generation (0 if it has no record
// of one).
func readGenerationRecords(dir string) ([]GenerationRecord, map[string]int, error) {
	top := filepath.Join(dir, generationsDir)
	profiles, err := readDirNames(top)
	if err != nil {
		return nil, nil, fmt.Errorf("reading generation records: %w", err)
	}
	var recs []GenerationRecord
	current := map[string]int{}
	for _, profile := range profiles {
		if CheckName(profile) != nil {
			continue
		}
		names, err := readDirNames(filepath.Join(top, profile))
		if err != nil {
			return nil, nil, fmt.Errorf("reading generation records: %w", err)
		}
		for _, name := range names {
			if name == currentLink {
				target, err := os.Readlink(filepath.Join(top, profile, name))
				if err != nil {
					return nil, nil, fmt.Errorf("reading generation records: %w", err)
				}
				n, err := strconv.Atoi(strings.TrimSuffix(target, ".json"))
				if err != nil {
					return nil, nil, fmt.Errorf("reading generation records: %s/current points at %q", profile, target)
				}
				current[profile] = n
				continue
			}
			num, ok := strings.CutSuffix(name, ".json")
			if _, err := strconv.Atoi(num); !ok || err != nil {
				continue // a temporary file
			}
			b, err := os.ReadFile(filepath.Join(top, profile, name))
			if err != nil {
				return nil, nil, fmt.Errorf("reading generation records: %w", err)
			}
			var g generationFile
			if err := json.Unmarshal(b, &g); err != nil {
				return nil, nil, fmt.Errorf("reading generation record %s/%s: %w", profile, name, err)
			}
			rec := GenerationRecord{GenerationID: GenerationID{Profile: g.Profile, Number: g.Number}, Created: g.Created,
				ConfigHash: g.ConfigHash, Config: g.Config, ClosureSize: g.ClosureSize}
			if rec.Toplevel, err = ParsePath(g.Toplevel); err != nil {
				return nil, nil, fmt.Errorf("reading generation record %s/%s: %w", profile, name, err)
			}
			if g.Profile != profile || num != strconv.Itoa(g.Number) {
				return nil, nil, fmt.Errorf("reading generation record %s/%s: it records generation %d of %s", profile, name, g.Number, g.Profile)
			}
			recs = append(recs, rec)
		}
	}
	return recs, current, nil
}
