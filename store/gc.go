package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The garbage collector. What keeps it from deleting what others use is
// the GC lock (lock.go).

// GCOptions control GC.
type GCOptions struct {
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// Expire are generations to delete before collecting (package
	// profile chooses them); a profile's current one never is.
	Expire []GenerationID
	// Waiting, if not nil, is called once if GC has to wait for running
	// realizations to end.
	Waiting func()
	// Background makes GC return as soon as the garbage is unregistered
	// (durably): its files are removed by a goroutine that holds the GC
	// lock, exclusive, until they are gone, so that nothing realizes or
	// collects meanwhile. GCResult.Wait waits for it, and so does Close.
	Background bool
}

// GCResult says what GC deleted (or would delete, in a dry run).
type GCResult struct {
	// Deleted are the valid paths deleted, sorted, and Freed the sum of
	// their sizes.
	Deleted []DeletedPath
	Freed   int64
	// Live counts the valid paths kept: the roots' closures.
	Live int
	// Generations are the generations deleted, by profile and number.
	Generations []GenerationID
	// StaleRoots are the indirect roots forgotten: links that are gone or
	// no longer point at a valid path.
	StaleRoots []string
	// Leftovers are the entries of Dir/store that were not valid paths
	// (what a killed build or GC leaves), the records in Dir/info of
	// paths that are not valid (a killed Install or GC) and the stale
	// temporary directories of Dir/tmp, removed; physical paths, sorted.
	Leftovers []string
	// StaleLocks are the lock files in Dir/locks of paths that are not
	// valid (failed builds, a killed GC), removed; sorted.
	StaleLocks []string

	removal *gcRemoval
}

// Wait waits until the files of what GC deleted are removed, and returns
// the first error removing them. Without GCOptions.Background, GC has
// waited already.
func (r *GCResult) Wait() error {
	if r == nil || r.removal == nil {
		return nil
	}
	<-r.removal.done
	return r.removal.err
}

// DeletedPath is a path GC deleted and its size.
type DeletedPath struct {
	Path Path
	Size int64
}

// GenerationID names a generation.
type GenerationID struct {
	Profile string
	Number  int
}

// collector is one run of GC, on one database connection.
type collector struct {
	s  *Store
	db *sql.Conn
}

// GC deletes every valid path that no root keeps alive, and what killed
// builds and collections left behind. The roots are every generation of
// every profile, the indirect roots whose links still point at a valid
// path, and, through the GC lock, whatever running realizations use; a
// root keeps its whole closure. A test's output (its result) lives while
// a path it tests does (gctests.go).
//
// Deleting is crash-safe: paths are unregistered (all in one transaction,
// made durable) before their directories are touched, so at every moment
// every registered path is complete and refers only to registered paths;
// whatever a killed GC leaves (unregistered trees, half removed), the next
// one removes.
func (s *Store) GC(ctx context.Context, opts GCOptions) (_ *GCResult, err error) {
	defer s.annotate(&err)
	lock, err := s.lockGC(ctx, true, opts.Waiting)
	if err != nil {
		return nil, err
	}
	// Unless the removal of files takes it over.
	defer func() {
		if lock != nil {
			lock.Unlock()
		}
	}()

	// One connection, with a page cache and a memory map big enough for
	// the whole database: GC reads all of it and deletes much.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("collecting garbage: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA cache_size = -262144; PRAGMA mmap_size = 1073741824; PRAGMA temp_store = MEMORY`); err != nil {
		return nil, fmt.Errorf("collecting garbage: %w", err)
	}
	// The connection goes back to the pool: as it was.
	defer conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA cache_size = -2000; PRAGMA mmap_size = 0; PRAGMA temp_store = DEFAULT`)
	c := &collector{s: s, db: conn}

	res := &GCResult{}
	if res.Generations, err = c.expired(ctx, opts.Expire); err != nil {
		return nil, err
	}
	listed := s.listGCDirs()
	g, err := c.loadRefGraph(ctx)
	if err != nil {
		<-listed
		return nil, err
	}
	roots, stale, err := c.gcRoots(ctx, g, res.Generations)
	if err != nil {
		return nil, err
	}
	res.StaleRoots = stale
	live := g.mark(roots)
	tests, err := s.testEdges(g)
	if err != nil {
		return nil, fmt.Errorf("reading test results: %w", err)
	}
	g.keepTestResults(live, tests)
	order := g.garbageOrder(live)
	res.Live = len(g.paths) - len(order)
	if res.Leftovers, res.StaleLocks, err = s.leftovers(g, <-listed); err != nil {
		return nil, err
	}
	res.Deleted, res.Freed, err = g.deleted(order)
	if err != nil || opts.DryRun {
		return res, err
	}
	if err := c.forgetRoots(ctx, res.Generations, res.StaleRoots); err != nil {
		return nil, err
	}
	if err := c.unregisterDurably(ctx, g, order); err != nil {
		return nil, err
	}
	res.removal = s.removeInBackground(ctx, g, order, slices.Concat(res.Leftovers, res.StaleLocks), lock)
	lock = nil
	if !opts.Background {
		if err := res.Wait(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// expired returns the generations of ids that exist and are not their
// profile's current one, by profile, newest first.
func (c *collector) expired(ctx context.Context, ids []GenerationID) ([]GenerationID, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := c.db.QueryContext(ctx, `SELECT g.profile, g.number FROM generations g LEFT JOIN profiles p ON p.name = g.profile
		WHERE g.number != COALESCE(p.current, -1) ORDER BY g.profile, g.number DESC`)
	if err != nil {
		return nil, fmt.Errorf("listing generations: %w", err)
	}
	defer rows.Close()
	var out []GenerationID
	for rows.Next() {
		var id GenerationID
		if err := rows.Scan(&id.Profile, &id.Number); err != nil {
			return nil, err
		}
		if slices.Contains(ids, id) {
			out = append(out, id)
		}
	}
	return out, rows.Err()
}

// forgetRoots deletes the rows of expired generations and stale indirect
// roots, in one transaction.
func (c *collector) forgetRoots(ctx context.Context, gens []GenerationID, stale []string) error {
	if len(gens) == 0 && len(stale) == 0 {
		return nil
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("deleting generations: %w", err)
	}
	defer tx.Rollback()
	for _, g := range gens {
		if _, err := tx.ExecContext(ctx, `DELETE FROM generations WHERE profile = ? AND number = ?`, g.Profile, g.Number); err != nil {
			return fmt.Errorf("deleting generation %d of %s: %w", g.Number, g.Profile, err)
		}
	}
	for _, link := range stale {
		if _, err := tx.ExecContext(ctx, `DELETE FROM roots WHERE link = ?`, link); err != nil {
			return fmt.Errorf("forgetting the root %s: %w", link, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("deleting generations: %w", err)
	}
	// The records go after the rows: a GC killed in between leaves
	// records of what is gone, which keep alive more than needed after a
	// RebuildDB, never less.
	for _, g := range gens {
		if err := c.s.removeGenerationRecord(g); err != nil {
			return err
		}
	}
	for _, link := range stale {
		if err := c.s.removeRootRecord(link); err != nil {
			return err
		}
	}
	return nil
}

// gcRoots returns the paths that roots keep alive, except the generations
// about to be deleted, and the indirect roots that are stale.
func (c *collector) gcRoots(ctx context.Context, g *refGraph, expired []GenerationID) (roots []int32, stale []string, err error) {
	gone := make(map[GenerationID]bool, len(expired))
	for _, id := range expired {
		gone[id] = true
	}
	rows, err := c.db.QueryContext(ctx, `SELECT profile, number, toplevel FROM generations`)
	if err != nil {
		return nil, nil, fmt.Errorf("listing generations: %w", err)
	}
	for rows.Next() {
		var (
			id  GenerationID
			top string
		)
		if err := rows.Scan(&id.Profile, &id.Number, &top); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if gone[id] {
			continue
		}
		// A toplevel that is not valid keeps nothing alive.
		if i, ok := g.index[top]; ok {
			roots = append(roots, i)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("listing generations: %w", err)
	}

	links, err := indirectRoots(ctx, c.db)
	if err != nil {
		return nil, nil, err
	}
	for _, link := range links {
		p, ok := c.s.linkTarget(link)
		if !ok {
			stale = append(stale, link)
			continue
		}
		i, ok := g.index[p.String()]
		if !ok {
			stale = append(stale, link)
			continue
		}
		roots = append(roots, i)
	}
	return roots, stale, nil
}

// leftovers lists the entries of Dir/store that are not valid paths, the
// records in Dir/info of paths that are not valid (and records half
// written), the temporary directories in Dir/tmp that only a process
// holding the GC lock makes, and the lock files of paths that are not
// valid, from the directories' names as listed. None is in use: a process
// makes or takes them only while it holds the GC lock shared, and GC
// holds it exclusive.
func (s *Store) leftovers(g *refGraph, names gcDirNames) (leftovers, locks []string, err error) {
	if names.err != nil {
		return nil, nil, names.err
	}
	validHash := make(map[string]bool, len(g.paths))
	for _, p := range g.paths {
		validHash[p[len(Dir)+1:][:HashStringLen]] = true
	}
	storeDir := filepath.Join(s.Dir, "store")
	for _, name := range names.store {
		if _, ok := g.index[Dir+"/"+name]; !ok {
			leftovers = append(leftovers, filepath.Join(storeDir, name))
		}
	}
	info := filepath.Join(s.Dir, infoDir)
	for _, name := range names.info {
		if h, ok := strings.CutSuffix(name, ".json"); !ok || !validHash[h] {
			leftovers = append(leftovers, filepath.Join(info, name))
		}
	}
	tmpDir := filepath.Join(s.Dir, "tmp")
	for _, name := range names.tmp {
		for _, prefix := range lockedTempPrefixes {
			if strings.HasPrefix(name, prefix) {
				leftovers = append(leftovers, filepath.Join(tmpDir, name))
				break
			}
		}
	}
	lockDir := filepath.Join(s.Dir, "locks")
	for _, name := range names.locks {
		if h, ok := strings.CutSuffix(name, ".lock"); ok && !validHash[h] {
			locks = append(locks, filepath.Join(lockDir, name))
		}
	}
	slices.Sort(leftovers)
	slices.Sort(locks)
	return leftovers, locks, nil
}

// gcDirNames are the names in the directories GC looks for leftovers in.
type gcDirNames struct {
	store, info, tmp, locks []string
	err                     error
}

// listGCDirs lists the directories GC looks for leftovers in, on a
// goroutine of its own: it runs while the database is read (nothing adds
// to them while GC holds its lock).
func (s *Store) listGCDirs() <-chan gcDirNames {
	out := make(chan gcDirNames, 1)
	go func() {
		var n gcDirNames
		for _, d := range []struct {
			dir  string
			into *[]string
		}{{"store", &n.store}, {infoDir, &n.info}, {"tmp", &n.tmp}, {"locks", &n.locks}} {
			p := filepath.Join(s.Dir, d.dir)
			if *d.into, n.err = readDirNames(p); n.err != nil {
				n.err = fmt.Errorf("listing %s: %w", p, n.err)
				break
			}
		}
		out <- n
	}()
	return out
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
