package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"hephc.dev/hephc/srcpos"
)

// RebuildOptions control RebuildDB.
type RebuildOptions struct {
	// Jobs is how many paths are hashed at once; 0 means GOMAXPROCS.
	Jobs int
	// Now names the old database's place aside; nil means time.Now.
	Now func() time.Time
}

// RebuildResult says what RebuildDB did.
type RebuildResult struct {
	// Aside is where the old database went, "" if there was none; its
	// -wal and -shm files went beside it, with the same suffixes.
	Aside string
	// Registered are the paths registered again, sorted.
	Registered []Path
	// Derivations, Roots and Generations count the other records
	// restored.
	Derivations, Roots, Generations int
	// Refused are the records not restored and why, sorted.
	Refused []RebuildProblem
	// Unrecorded are the entries of Dir/store that no record describes,
	// sorted: never registered (what a killed build leaves), or their
	// record was lost. They stay unregistered; GC removes them.
	Unrecorded []string
}

// RebuildProblem is a record RebuildDB did not restore.
type RebuildProblem struct {
	// What is a store path, or a record's file when it names none.
	What   string
	Reason string
}

func (p RebuildProblem) String() string { return p.What + ": " + p.Reason }

// RebuildDB rebuilds the database of the store in dir from the records on
// disk (ondisk.go) and the content they describe, for a database that is
// lost or corrupt. The old database, if any, is moved aside (never
// deleted). A path is registered again only if its record is whole, its
// content hashes to the content hash the record holds (so a tree torn by
// a power loss is not), its content refers to exactly the references the
// record holds (a fresh scan), and each of those is registered again
// too; the derivations, indirect roots and generations recorded are
// restored. What is not restored is reported. A database that opens and
// passes SQLite's quick_check is not rebuilt: move it aside first to
// rebuild it anyway. It holds the GC lock exclusive throughout.
func RebuildDB(ctx context.Context, dir string, opts RebuildOptions) (*RebuildResult, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(filepath.Join(dir, "store")); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("rebuilding the database of %s: it is not a store (it has no store/ directory)", dir)
	}
	if err := healthyDB(dir); err != nil {
		return nil, err
	}
	s := &Store{Dir: dir, Now: time.Now}
	for _, sub := range storeSubdirs {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("rebuilding the database of %s: %w", dir, err)
		}
	}
	lock, err := s.LockGC(ctx, true)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	if err := healthyDB(dir); err != nil {
		return nil, err // rebuilt while this waited for the lock
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	res := &RebuildResult{}
	if res.Aside, err = moveDBAside(dir, now()); err != nil {
		return nil, err
	}
	if s.db, err = openDB(dir); err != nil {
		return nil, err
	}
	defer s.db.Close()
	if err := s.rebuild(ctx, res, opts.Jobs); err != nil {
		return nil, fmt.Errorf("rebuilding the database of %s: %w", dir, s.classify(err))
	}
	return res, nil
}

// healthyDB returns an error if the database in dir is there, opens,
// passes quick_check, and holds paths (or the store holds none).
func healthyDB(dir string) error {
	s := &Store{Dir: dir}
	if fi, err := os.Stat(s.dbPath()); err != nil || fi.Size() == 0 {
		return nil
	}
	db, err := openDB(dir)
	if err != nil {
		return nil
	}
	defer db.Close()
	var ok string
	if err := db.QueryRow(`PRAGMA quick_check`).Scan(&ok); err != nil || ok != "ok" {
		return nil
	}
	var one int
	if err := db.QueryRow(`SELECT 1 FROM paths LIMIT 1`).Scan(&one); err != nil && s.holdsPaths() {
		return nil
	}
	return fmt.Errorf("the store database %s opens and passes SQLite's quick_check: not rebuilding it (move it aside first to rebuild it from the records on disk anyway)", s.dbPath())
}

// moveDBAside renames the database of dir, and its -wal and -shm files,
// to db.sqlite.broken-<time>, and returns that name ("" if there was no
// database).
func moveDBAside(dir string, now time.Time) (string, error) {
	db := filepath.Join(dir, DBFile)
	aside := db + ".broken-" + now.UTC().Format("20060102T150405Z")
	// Never over another one.
	for i := 1; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s.broken-%s-%d", db, now.UTC().Format("20060102T150405Z"), i)
	}
	moved := false
	for _, suffix := range []string{"", "-wal", "-shm"} {
		err := os.Rename(db+suffix, aside+suffix)
		switch {
		case err == nil:
			moved = true
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("moving the store database aside: %w", err)
		}
	}
	if !moved {
		return "", nil
	}
	return aside, nil
}

// rebuild fills the new, empty database from the records.
func (s *Store) rebuild(ctx context.Context, res *RebuildResult, jobs int) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if res.Derivations, err = s.restoreDerivations(ctx, tx, res); err != nil {
		return err
	}
	if err := s.restorePaths(ctx, tx, res, jobs); err != nil {
		return err
	}
	if res.Roots, err = s.restoreRoots(ctx, tx); err != nil {
		return err
	}
	if res.Generations, err = s.restoreGenerations(ctx, tx, res); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO meta(key, value) VALUES (?, '1')`, recordsKey); err != nil {
		return err
	}
	slices.SortFunc(res.Refused, func(a, b RebuildProblem) int { return strings.Compare(a.What, b.What) })
	if err := tx.Commit(); err != nil {
		return err
	}
	return s.sync()
}

func (s *Store) restoreDerivations(ctx context.Context, tx *sql.Tx, res *RebuildResult) (int, error) {
	dir := filepath.Join(s.Dir, drvDir)
	names, err := readDirNames(dir)
	if err != nil {
		return 0, err
	}
	slices.Sort(names)
	n := 0
	for _, name := range names {
		hs, ok := strings.CutSuffix(name, ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue // a record half written
		}
		file := filepath.Join(dir, name)
		b, d, attr, pos, err := readDerivationRecord(file)
		if err != nil {
			res.Refused = append(res.Refused, RebuildProblem{file, err.Error()})
			continue
		}
		if h, err := d.Hash(); err != nil || h.String() != hs {
			res.Refused = append(res.Refused, RebuildProblem{file, fmt.Sprintf("the derivation does not hash to its name (%v)", err)})
			continue
		}
		if _, err := srcpos.Parse(pos); err != nil {
			pos = ""
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO derivations(hash, name, json, attr, pos) VALUES (?, ?, ?, ?, ?)`, hs, d.Name, []byte(b), attr, pos); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// candidate is a path record and what its content turned out to be.
type candidate struct {
	info   *PathInfo
	reason string // why it cannot be registered, "" if it can
}

func (s *Store) restorePaths(ctx context.Context, tx *sql.Tx, res *RebuildResult, jobs int) error {
	dir := filepath.Join(s.Dir, infoDir)
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	slices.Sort(names)
	cands := map[Path]*candidate{}
	recorded := map[string]bool{} // hash strings
	var order []*candidate
	for _, name := range names {
		if strings.HasPrefix(name, ".") {
			continue // a record half written
		}
		info, err := readPathRecord(filepath.Join(dir, name))
		if err != nil {
			res.Refused = append(res.Refused, RebuildProblem{filepath.Join(dir, name), err.Error()})
			continue
		}
		c := &candidate{info: info}
		cands[info.Path] = c
		recorded[info.Path.Hash.String()] = true
		order = append(order, c)
	}
	s.checkCandidates(order, jobs)

	// References first; a path whose reference is not registered is not.
	state := map[Path]int{} // 1: visiting, 2: registered, 3: refused
	var visit func(c *candidate) bool
	visit = func(c *candidate) bool {
		p := c.info.Path
		switch state[p] {
		case 1, 3:
			return false
		case 2:
			return true
		}
		state[p] = 1
		ok := c.reason == ""
		for _, r := range c.info.References {
			if !ok || r == p {
				continue
			}
			rc := cands[r]
			switch {
			case rc == nil:
				c.reason, ok = fmt.Sprintf("its reference %s has no record", r), false
			case !visit(rc):
				c.reason, ok = fmt.Sprintf("its reference %s is not registered", r), false
			}
		}
		if !ok {
			state[p] = 3
			res.Refused = append(res.Refused, RebuildProblem{p.String(), c.reason})
			return false
		}
		if err := registerTx(ctx, tx, c.info); err != nil {
			c.reason = err.Error()
			state[p] = 3
			res.Refused = append(res.Refused, RebuildProblem{p.String(), c.reason})
			return false
		}
		state[p] = 2
		res.Registered = append(res.Registered, p)
		return true
	}
	for _, c := range order {
		visit(c)
	}
	sortPaths(res.Registered)

	storeNames, err := readDirNames(filepath.Join(s.Dir, "store"))
	if err != nil {
		return err
	}
	for _, name := range storeNames {
		if len(name) < HashStringLen || !recorded[name[:HashStringLen]] {
			res.Unrecorded = append(res.Unrecorded, filepath.Join(s.Dir, "store", name))
		}
	}
	slices.Sort(res.Unrecorded)
	return nil
}

// checkCandidates hashes the content of each candidate, jobs at a time,
// scanning it for the references its record holds, and sets the reason
// of each whose content is missing or does not match its record.
func (s *Store) checkCandidates(cands []*candidate, jobs int) {
	if jobs <= 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	next := make(chan *candidate)
	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				c.reason = s.checkContent(c.info)
			}
		}()
	}
	for _, c := range cands {
		next <- c
	}
	close(next)
	wg.Wait()
}

// checkContent says why the content at info.Path does not match info, or
// "" if it does.
func (s *Store) checkContent(info *PathInfo) string {
	phys := s.Physical(info.Path)
	if _, err := os.Lstat(phys); err != nil {
		return "its content is missing"
	}
	tree, refs, err := hashTree(phys, append(slices.Clone(info.References), info.Path))
	switch {
	case err != nil:
		return err.Error()
	case tree.Hash != info.ContentHash:
		return fmt.Sprintf("its content hashes to %s, its record says %s (torn or changed)", tree.Hash, info.ContentHash)
	case !slices.Equal(refs, info.References):
		return fmt.Sprintf("its content refers to %v, its record says %v", refs, info.References)
	}
	return ""
}

// registerTx inserts info and its references, which are registered, in tx.
func registerTx(ctx context.Context, tx *sql.Tx, info *PathInfo) error {
	r, err := tx.ExecContext(ctx, `INSERT INTO paths(path, content_hash, size, files, deriver, registered, ca) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		info.Path.String(), info.ContentHash.String(), info.Size, info.Files, info.Deriver.String(), info.Registered, info.CA)
	if err != nil {
		return err
	}
	id, err := r.LastInsertId()
	if err != nil {
		return err
	}
	for _, ref := range info.References {
		if _, err := tx.ExecContext(ctx, `INSERT INTO refs(referrer, reference) SELECT ?, id FROM paths WHERE path = ?`, id, ref.String()); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) restoreRoots(ctx context.Context, tx *sql.Tx) (int, error) {
	dir := filepath.Join(s.Dir, rootsDir)
	names, err := readDirNames(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		link, err := os.Readlink(filepath.Join(dir, name))
		if err != nil || rootRecordName(link) != name {
			continue // a record half written
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO roots(link) VALUES (?) ON CONFLICT(link) DO NOTHING`, link); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

func (s *Store) restoreGenerations(ctx context.Context, tx *sql.Tx, res *RebuildResult) (int, error) {
	recs, current, err := readGenerationRecords(s.Dir)
	if err != nil {
		return 0, err
	}
	last := map[string]int{}
	exists := map[GenerationID]bool{}
	for _, r := range recs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO generations(profile, number, toplevel, created, config_hash, config, closure_size) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			r.Profile, r.Number, r.Toplevel.String(), r.Created, r.ConfigHash, r.Config, r.ClosureSize); err != nil {
			return 0, err
		}
		last[r.Profile] = max(last[r.Profile], r.Number)
		exists[r.GenerationID] = true
		if !slices.Contains(res.Registered, r.Toplevel) {
			res.Refused = append(res.Refused, RebuildProblem{r.Toplevel.String(),
				fmt.Sprintf("generation %d of %s is restored, but its toplevel is not registered: it keeps nothing alive", r.Number, r.Profile)})
		}
	}
	for profile, n := range last {
		if c, ok := current[profile]; ok && exists[GenerationID{profile, c}] {
			n = c
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO profiles(name, current) VALUES (?, ?)`, profile, n); err != nil {
			return 0, err
		}
	}
	return len(recs), nil
}
