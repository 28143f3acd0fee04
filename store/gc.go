package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The garbage collector and what keeps it from deleting what others use.
//
// Dir/gc.lock is the store-wide GC lock. Whatever makes paths valid or
// relies on valid paths staying valid holds it shared for as long as it
// does (Realize, Add, Verify, Repair); GC holds it exclusive. So GC waits
// until no realization runs, and a realization that starts while GC runs
// waits until GC is done: the paths a running realization uses are roots
// without being written down anywhere.
//
// The per-output locks (locks/<hash>.lock) are only ever taken under the
// GC lock, so GC, holding it exclusive, may delete the lock files of the
// paths it deletes.

// LockGC takes the store-wide GC lock, shared or exclusive, waiting for
// whoever holds it in the other mode or until ctx ends. One process may
// hold it shared more than once (through different calls), but must not
// call GC then: GC would wait for it forever. Hold it shared from before
// a realization until its outputs are rooted (a result link, a
// generation), or GC may take them in between.
func (s *Store) LockGC(ctx context.Context, exclusive bool) (*Lock, error) {
	return s.lockGC(ctx, exclusive, nil)
}

// lockGC is LockGC; waiting, if not nil, is called once if the lock is not
// free at once.
func (s *Store) lockGC(ctx context.Context, exclusive bool, waiting func()) (*Lock, error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, "gc.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("taking the GC lock: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	fd := int(f.Fd())
	err = flock(fd, how|unix.LOCK_NB)
	if err == nil {
		return &Lock{f}, nil
	}
	if err != unix.EWOULDBLOCK {
		f.Close()
		return nil, fmt.Errorf("taking the GC lock: %w", err)
	}
	if waiting != nil {
		waiting()
	}
	// A blocking flock is woken as soon as the lock is released (polling
	// could keep missing short gaps between collections), but cannot be
	// canceled: if ctx ends first, the goroutine gives the lock up
	// whenever it gets it.
	got := make(chan error, 1)
	go func() { got <- flock(fd, how) }()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("taking the GC lock: %w", err)
		}
		return &Lock{f}, nil
	case <-ctx.Done():
		go func() {
			<-got
			f.Close()
		}()
		return nil, ctx.Err()
	}
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// GCOptions control GC.
type GCOptions struct {
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// KeepGenerations, if above 0, deletes the generations of each
	// profile older than its newest KeepGenerations before collecting.
	KeepGenerations int
	// OlderThan, if above 0, deletes the generations created more than
	// OlderThan ago before collecting. With KeepGenerations too, a
	// generation is deleted only when both say so.
	OlderThan time.Duration
	// Waiting, if not nil, is called once if GC has to wait for running
	// realizations to end.
	Waiting func()
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
	// (what a killed build or GC leaves) and the stale temporary
	// directories of Dir/tmp, removed; physical paths, sorted.
	Leftovers []string
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

// gcBatch is how many paths one transaction unregisters.
const gcBatch = 5000

// GC deletes every valid path that no root keeps alive, and what killed
// builds and collections left behind. The roots are every generation of
// every profile, the indirect roots whose links still point at a valid
// path, and, through the GC lock, whatever running realizations use; a
// root keeps its whole closure.
//
// Deleting is crash-safe: paths are unregistered (many per transaction)
// before their directories are touched, referrers before what they refer
// to, so at every moment every registered path is complete and refers
// only to registered paths; whatever a killed GC leaves (unregistered
// trees, half removed), the next one removes.
func (s *Store) GC(ctx context.Context, opts GCOptions) (*GCResult, error) {
	lock, err := s.lockGC(ctx, true, opts.Waiting)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()

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
	if res.Generations, err = c.expiredGenerations(ctx, opts); err != nil {
		return nil, err
	}
	g, err := c.loadRefGraph(ctx)
	if err != nil {
		return nil, err
	}
	roots, stale, err := c.gcRoots(ctx, g, res.Generations)
	if err != nil {
		return nil, err
	}
	res.StaleRoots = stale
	live := g.mark(roots)
	order := g.garbageOrder(live)
	res.Live = len(g.paths) - len(order)
	leftovers, err := s.leftovers(g)
	if err != nil {
		return nil, err
	}
	res.Leftovers = leftovers
	res.Deleted, res.Freed, err = g.deleted(order)
	if err != nil || opts.DryRun {
		return res, err
	}
	if err := c.forgetRoots(ctx, res.Generations, res.StaleRoots); err != nil {
		return nil, err
	}
	if err := c.deleteGarbage(ctx, g, order, res.Leftovers); err != nil {
		return nil, err
	}
	return res, nil
}

// deleted lists the paths of order, sorted, with their sizes and total.
func (g *refGraph) deleted(order []int32) ([]DeletedPath, int64, error) {
	sorted := slices.Clone(order)
	slices.SortFunc(sorted, func(a, b int32) int { return strings.Compare(g.paths[a], g.paths[b]) })
	out := make([]DeletedPath, len(sorted))
	var total int64
	for k, i := range sorted {
		p, err := ParsePath(g.paths[i])
		if err != nil {
			return nil, 0, err
		}
		out[k] = DeletedPath{p, g.sizes[i]}
		total += g.sizes[i]
	}
	return out, total, nil
}

// expiredGenerations returns the generations opts asks to delete: never
// the current one of a profile.
func (c *collector) expiredGenerations(ctx context.Context, opts GCOptions) ([]GenerationID, error) {
	if opts.KeepGenerations <= 0 && opts.OlderThan <= 0 {
		return nil, nil
	}
	rows, err := c.db.QueryContext(ctx, `SELECT g.profile, g.number, g.created, COALESCE(p.current, -1)
		FROM generations g LEFT JOIN profiles p ON p.name = g.profile
		ORDER BY g.profile, g.number DESC`)
	if err != nil {
		return nil, fmt.Errorf("listing generations: %w", err)
	}
	defer rows.Close()
	cutoff := c.s.Now().Add(-opts.OlderThan).Unix()
	var (
		out     []GenerationID
		profile string
		rank    int // 1 for a profile's newest generation
	)
	for rows.Next() {
		var (
			id               GenerationID
			created, current int64
		)
		if err := rows.Scan(&id.Profile, &id.Number, &created, &current); err != nil {
			return nil, err
		}
		if id.Profile != profile {
			profile, rank = id.Profile, 0
		}
		rank++
		if int64(id.Number) == current {
			continue
		}
		if opts.KeepGenerations > 0 && rank <= opts.KeepGenerations {
			continue
		}
		if opts.OlderThan > 0 && created >= cutoff {
			continue
		}
		out = append(out, id)
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
	return tx.Commit()
}

// refGraph is every valid path and its references, in memory: path i has
// database id ids[i] and refers to out[start[i]:start[i+1]].
type refGraph struct {
	ids   []int64
	paths []string // store paths
	sizes []int64
	index map[string]int32 // store path -> i
	start []int32
	out   []int32
}

// loadRefGraph reads the paths and refs tables, at the same time on two
// connections. (Nothing registers paths while GC holds its lock, so both
// see the same paths; if they did not, an unknown id is an error.)
func (c *collector) loadRefGraph(ctx context.Context) (*refGraph, error) {
	type edges struct {
		from, to []int64
		err      error
	}
	got := make(chan edges, 1)
	go func() {
		var e edges
		defer func() { got <- e }()
		// refs is keyed by (referrer, reference).
		rows, err := c.s.db.QueryContext(ctx, `SELECT referrer, reference FROM refs`)
		if err != nil {
			e.err = err
			return
		}
		defer rows.Close()
		for rows.Next() {
			var a, b int64
			if e.err = rows.Scan(&a, &b); e.err != nil {
				return
			}
			e.from = append(e.from, a)
			e.to = append(e.to, b)
		}
		e.err = rows.Err()
	}()

	g, byID, err := c.loadPaths(ctx)
	e := <-got
	if err != nil {
		return nil, fmt.Errorf("reading valid paths: %w", err)
	}
	if e.err != nil {
		return nil, fmt.Errorf("reading references: %w", e.err)
	}
	// Compressed rows: refs of i are out[start[i]:start[i+1]].
	g.start = make([]int32, len(g.ids)+1)
	from := make([]int32, len(e.from))
	for k := range e.from {
		a, ok1 := byID[e.from[k]]
		b, ok2 := byID[e.to[k]]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("reading references: %d refers to %d, not both valid paths", e.from[k], e.to[k])
		}
		from[k] = a
		e.to[k] = int64(b)
		g.start[a+1]++
	}
	for i := 1; i < len(g.start); i++ {
		g.start[i] += g.start[i-1]
	}
	g.out = make([]int32, len(from))
	fill := slices.Clone(g.start[:len(g.ids)])
	for k, a := range from {
		g.out[fill[a]] = int32(e.to[k])
		fill[a]++
	}
	return g, nil
}

// loadPaths reads the paths table.
func (c *collector) loadPaths(ctx context.Context) (*refGraph, map[int64]int32, error) {
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM paths`).Scan(&n); err != nil {
		return nil, nil, err
	}
	g := &refGraph{
		ids:   make([]int64, 0, n),
		paths: make([]string, 0, n),
		sizes: make([]int64, 0, n),
		index: make(map[string]int32, n),
	}
	byID := make(map[int64]int32, n)
	rows, err := c.db.QueryContext(ctx, `SELECT id, path, size FROM paths`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, size int64
			p        string
		)
		if err := rows.Scan(&id, &p, &size); err != nil {
			return nil, nil, err
		}
		i := int32(len(g.ids))
		g.ids = append(g.ids, id)
		g.paths = append(g.paths, p)
		g.sizes = append(g.sizes, size)
		g.index[p] = i
		byID[id] = i
	}
	return g, byID, rows.Err()
}

func (g *refGraph) refs(i int32) []int32 { return g.out[g.start[i]:g.start[i+1]] }

// mark returns which paths the roots keep alive.
func (g *refGraph) mark(roots []int32) []bool {
	live := make([]bool, len(g.ids))
	stack := append([]int32(nil), roots...)
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if live[i] {
			continue
		}
		live[i] = true
		for _, r := range g.refs(i) {
			if !live[r] {
				stack = append(stack, r)
			}
		}
	}
	return live
}

// garbageOrder returns the paths not live, each before every path it
// refers to (Kahn's algorithm on the garbage's references; a live path
// never refers to garbage). Unregistering in this order never leaves a
// registered path referring to an unregistered one.
func (g *refGraph) garbageOrder(live []bool) []int32 {
	indeg := make([]int32, len(g.ids))
	n := 0
	for i := range g.ids {
		if live[i] {
			continue
		}
		n++
		for _, r := range g.refs(int32(i)) {
			if r != int32(i) && !live[r] {
				indeg[r]++
			}
		}
	}
	order := make([]int32, 0, n)
	for i := range g.ids {
		if !live[i] && indeg[i] == 0 {
			order = append(order, int32(i))
		}
	}
	for k := 0; k < len(order); k++ {
		i := order[k]
		for _, r := range g.refs(i) {
			if r == i || live[r] {
				continue
			}
			if indeg[r]--; indeg[r] == 0 {
				order = append(order, r)
			}
		}
	}
	if len(order) < n {
		// A cycle of references, which registration cannot make: leave
		// those paths alone rather than fail.
		for i := range g.ids {
			live[i] = live[i] || indeg[i] > 0
		}
	}
	return order
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

// leftovers lists the entries of Dir/store that are not valid paths, and
// the temporary directories in Dir/tmp that only a process holding the GC
// lock makes (none runs while GC holds it exclusive).
func (s *Store) leftovers(g *refGraph) ([]string, error) {
	var out []string
	storeDir := filepath.Join(s.Dir, "store")
	names, err := readDirNames(storeDir)
	if err != nil {
		return nil, fmt.Errorf("listing the store: %w", err)
	}
	for _, name := range names {
		if _, ok := g.index[Dir+"/"+name]; !ok {
			out = append(out, filepath.Join(storeDir, name))
		}
	}
	tmpDir := filepath.Join(s.Dir, "tmp")
	names, err = readDirNames(tmpDir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", tmpDir, err)
	}
	for _, name := range names {
		for _, prefix := range lockedTempPrefixes {
			if strings.HasPrefix(name, prefix) {
				out = append(out, filepath.Join(tmpDir, name))
				break
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// lockedTempPrefixes are the names of the temporary directories made in
// Dir/tmp under the GC lock: builds, Add and repairs.
var lockedTempPrefixes = []string{"build-", "add-", "repair-"}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// deleteGarbage unregisters the paths of order (referrers first), gcBatch
// per transaction, and after each transaction has workers remove their
// trees (and lock files); then the leftovers go the same way. Removing is
// the slow part (file system metadata, in the kernel), so it runs while
// the next batch is unregistered, with more workers than cores.
//
// A tree is removed where it is, not moved aside first: once its path is
// unregistered nothing trusts it, and what a killed GC leaves half
// removed, the next GC removes (or a realization, before it builds the
// path again). On a slow disk a rename per path costs as much again as
// everything else GC does (BenchmarkGC).
func (c *collector) deleteGarbage(ctx context.Context, g *refGraph, order []int32, leftovers []string) error {
	rm := newRemover(4 * runtime.GOMAXPROCS(0))
	err := c.unregisterAndRemove(ctx, g, order, leftovers, rm)
	// On an error, what was unregistered is removed all the same.
	if werr := rm.wait(); err == nil && werr != nil {
		err = fmt.Errorf("collecting garbage: %w", werr)
	}
	return err
}

func (c *collector) unregisterAndRemove(ctx context.Context, g *refGraph, order []int32, leftovers []string, rm *remover) error {
	storeDir := filepath.Join(c.s.Dir, "store")
	locks := filepath.Join(c.s.Dir, "locks")
	for start := 0; start < len(order); start += gcBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := order[start:min(start+gcBatch, len(order))]
		if err := c.unregister(ctx, g, batch); err != nil {
			return err
		}
		for _, i := range batch {
			base := g.paths[i][len(Dir)+1:]
			rm.add(removal{
				tree: filepath.Join(storeDir, base),
				// Nobody holds or waits for a per-output lock now.
				lock: filepath.Join(locks, base[:HashStringLen]+".lock"),
			})
		}
	}
	for _, path := range leftovers {
		rm.add(removal{tree: path})
	}
	return nil
}

// unregister deletes the rows of batch, which no path outside it that
// remains valid refers to, in one transaction.
//
// It does what the foreign keys of refs would do (cascade from the
// referrer, refuse to delete a path still referred to), but for the batch
// at once: the batch's references go first, then, if no reference to the
// batch is left, its paths. Row by row, the foreign keys cost SQLite
// nearly twice as much.
func (c *collector) unregister(ctx context.Context, g *refGraph, batch []int32) error {
	var ids strings.Builder
	ids.WriteByte('[')
	for k, i := range batch {
		if k > 0 {
			ids.WriteByte(',')
		}
		ids.WriteString(strconv.FormatInt(g.ids[i], 10))
	}
	ids.WriteByte(']')
	// Outside a transaction: inside, the pragma does nothing.
	if _, err := c.db.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return fmt.Errorf("unregistering garbage: %w", err)
	}
	defer c.db.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`)
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("unregistering garbage: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM refs WHERE referrer IN (SELECT value FROM json_each(?))`, ids.String()); err != nil {
		return fmt.Errorf("unregistering garbage: %w", err)
	}
	var left int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM refs WHERE reference IN (SELECT value FROM json_each(?))`, ids.String()).Scan(&left); err != nil || left > 0 {
		return fmt.Errorf("unregistering garbage: %d references to it are left (%v)", left, err)
	}
	r, err := tx.ExecContext(ctx, `DELETE FROM paths WHERE id IN (SELECT value FROM json_each(?))`, ids.String())
	if err != nil {
		return fmt.Errorf("unregistering garbage: %w", err)
	}
	if n, err := r.RowsAffected(); err != nil || n != int64(len(batch)) {
		return fmt.Errorf("unregistering garbage: deleted %d rows, want %d (%v)", n, len(batch), err)
	}
	return tx.Commit()
}

// removal is a tree to remove, and its lock file, if any.
type removal struct{ tree, lock string }

// remover removes trees with a few goroutines.
type remover struct {
	jobs chan removal
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

func newRemover(workers int) *remover {
	r := &remover{jobs: make(chan removal, 4096)}
	for range workers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			buf := make([]byte, 8192)
			for j := range r.jobs {
				err := removeGarbage(j.tree, buf)
				if j.lock != "" {
					if lerr := os.Remove(j.lock); err == nil && lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
						err = lerr
					}
				}
				if err != nil {
					r.mu.Lock()
					if r.err == nil {
						r.err = err
					}
					r.mu.Unlock()
				}
			}
		}()
	}
	return r
}

func (r *remover) add(j removal) { r.jobs <- j }

// wait waits for every queued removal and returns the first error.
func (r *remover) wait() error {
	close(r.jobs)
	r.wg.Wait()
	return r.err
}

// removeGarbage removes the tree at path as RemoveTree does, with fewer
// system calls in the common case, which is most of what GC spends: it
// opens a directory without looking first, reads its entries and their
// types with getdents into buf, and makes a directory writable only when
// an unlink in it is refused (never, as root). Anything unexpected is
// left to RemoveTree.
func removeGarbage(path string, buf []byte) error {
	if err := removeGarbageAt(unix.AT_FDCWD, path, buf); err != nil {
		return RemoveTree(path)
	}
	return nil
}

func removeGarbageAt(dirfd int, name string, buf []byte) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch err {
	case nil:
	case unix.ENOTDIR, unix.ELOOP: // a file or a symlink
		return unix.Unlinkat(dirfd, name, 0)
	case unix.ENOENT:
		return nil
	default:
		return err
	}
	type entry struct {
		name string
		dir  bool
	}
	var entries []entry
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			unix.Close(fd)
			return err
		}
		if n == 0 {
			break
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8,
		// then the name, NUL-terminated.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				unix.Close(fd)
				return unix.EINVAL
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				entries = append(entries, entry{s, b[18] == unix.DT_DIR})
			}
			b = b[reclen:]
		}
	}
	writable := false
	for _, e := range entries {
		for {
			var err error
			if e.dir {
				err = removeGarbageAt(fd, e.name, buf)
			} else if err = unix.Unlinkat(fd, e.name, 0); err == unix.EISDIR {
				e.dir = true // a file system without entry types
				continue
			}
			if err == unix.EACCES && !writable {
				// A read-only directory, to an ordinary user.
				writable = true
				if err = unix.Fchmod(fd, 0o700); err == nil {
					continue
				}
			}
			if err != nil {
				unix.Close(fd)
				return err
			}
			break
		}
	}
	unix.Close(fd)
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}
