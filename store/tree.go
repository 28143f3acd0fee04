package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// The domain-separation prefixes of the tree hash (docs/store.md, "Output
// content hash"). Changing any of them changes every output hash.
const (
	fileHashPrefix    = "hephc-file\x00"
	symlinkHashPrefix = "hephc-symlink\x00"
	dirHashPrefix     = "hephc-dir\x00"
)

// readBufSize is the size of each worker's read buffer. 1 MiB costs few
// system calls per file, and blake3 hashes each Write straight from it, 8
// chunks (8 KiB) at a time with AVX2, copying only the last 8 KiB. Measured
// (BenchmarkHashTree): 4 MiB is no faster, 128 KiB slower, and mmap with
// MAP_POPULATE slower than read (the page tables cost more than the copy).
const readBufSize = 1 << 20

// HashOptions configures HashTree.
type HashOptions struct {
	// Refs, if not nil, is scanned for in every file's contents, every
	// symlink's target and every entry's name.
	Refs *RefScanner
	// Workers is how many goroutines read and hash files, besides the one
	// that walks directories; 0 means GOMAXPROCS.
	Workers int
}

// TreeInfo is what HashTree learns about a tree.
type TreeInfo struct {
	// Hash is the output content hash of the tree.
	Hash OutputHash
	// Size is the sum of the sizes of the regular files and the lengths of
	// the symlink targets.
	Size int64
	// Files counts regular files and symlinks (every entry but directories).
	Files int
	// Refs are the candidates of HashOptions.Refs found in the tree,
	// sorted by their bytes (the order of their string forms); nil if none.
	Refs []DrvHash
}

// HashTree returns the output content hash of the file tree at root, in
// the format docs/store.md describes: a Merkle hash over file contents,
// exec bits, symlink targets and entry names, and nothing else. root is not
// followed if it is a symlink; it may be a regular file or a symlink as
// well as a directory. Other file types (devices, fifos, sockets) are
// errors that name the entry relative to root.
//
// Each file is read once, hashed and scanned for references in the same
// pass. Files are hashed by a pool of opt.Workers goroutines while one
// goroutine walks the directories; the result does not depend on the
// number of workers. The tree must not change while it is hashed.
func HashTree(root string, opt HashOptions) (TreeInfo, error) {
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return TreeInfo{}, fmt.Errorf("hashing tree: %w", err)
	}
	var top node
	t := &treeHasher{root: root, refs: opt.Refs}
	if !fi.IsDir() {
		// A single file or symlink: no pool.
		top.kind, err = kindOf(fi.Mode())
		if err != nil {
			return TreeInfo{}, t.errorf(".", "%w", err)
		}
		w := t.newWorker()
		if err := w.hash(job{path: root, rel: ".", n: &top}); err != nil {
			return TreeInfo{}, err
		}
		return t.info(top.hash, w), nil
	}

	q := newJobQueue()
	ws := make([]*worker, workers)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = t.newWorker()
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			for {
				j, ok := q.pop()
				if !ok {
					return
				}
				if t.failed.Load() {
					continue // drain
				}
				if err := w.hash(j); err != nil {
					t.fail(err)
				}
			}
		}(ws[i])
	}
	top.kind = kindDir
	t.walk(root, ".", &top, q)
	q.close()
	wg.Wait()
	if t.err != nil {
		return TreeInfo{}, t.err
	}

	// Every file's hash is in; the directories' follow, children first.
	var m *RefMatcher
	if t.refs != nil {
		m = t.refs.NewMatcher()
	}
	hashDirs(&top, blake3.New(), m)
	info := t.info(top.hash, ws...)
	if m != nil {
		info.Refs = mergeRefs(info.Refs, m.Found())
	}
	return info, nil
}

type nodeKind uint8

const (
	kindFile nodeKind = iota
	kindSymlink
	kindDir
)

func kindOf(mode fs.FileMode) (nodeKind, error) {
	switch mode.Type() {
	case 0:
		return kindFile, nil
	case fs.ModeSymlink:
		return kindSymlink, nil
	case fs.ModeDir:
		return kindDir, nil
	}
	return 0, fmt.Errorf("unsupported file type %s (only regular files, directories and symlinks may be in an output)", describeType(mode))
}

func describeType(mode fs.FileMode) string {
	switch t := mode.Type(); {
	case t&fs.ModeNamedPipe != 0:
		return "fifo"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "block device"
	default:
		return t.String()
	}
}

// A node is one entry of the tree being hashed. A worker fills in the hash
// of a file or symlink; hashDirs fills in a directory's once the pool is done.
type node struct {
	name     string
	kind     nodeKind
	hash     [HashSize]byte
	children []node // a directory's entries, sorted by name
}

// A job asks a worker to hash one file or symlink into n.hash.
type job struct {
	path string // to open
	rel  string // for errors: relative to the root
	n    *node
}

type treeHasher struct {
	root string
	refs *RefScanner

	failed  atomic.Bool
	errOnce sync.Once
	err     error // set once, before failed; read after the pool is done
}

func (t *treeHasher) fail(err error) {
	t.errOnce.Do(func() {
		t.err = err
		t.failed.Store(true)
	})
}

func (t *treeHasher) errorf(rel, format string, args ...any) error {
	if rel == "." {
		return fmt.Errorf("hashing tree %s: %w", t.root, fmt.Errorf(format, args...))
	}
	return fmt.Errorf("hashing tree %s: %s: %w", t.root, rel, fmt.Errorf(format, args...))
}

// walk reads the directory at path (rel from the root) into n.children,
// queueing its files and symlinks for the workers, then descends into its
// subdirectories. It stops early once anything has failed.
func (t *treeHasher) walk(path, rel string, n *node, q *jobQueue) {
	entries, err := os.ReadDir(path) // sorted by name bytes
	if err != nil {
		t.fail(t.errorf(rel, "%w", err))
		return
	}
	n.children = make([]node, len(entries))
	var batch []job
	for i, e := range entries {
		c := &n.children[i]
		c.name = e.Name()
		if c.kind, err = kindOf(e.Type()); err != nil {
			t.fail(t.errorf(joinRel(rel, c.name), "%w", err))
			return
		}
		if c.kind != kindDir {
			batch = append(batch, job{path: path + "/" + c.name, rel: joinRel(rel, c.name), n: c})
		}
	}
	q.push(batch)
	for i := range n.children {
		if t.failed.Load() {
			return
		}
		if c := &n.children[i]; c.kind == kindDir {
			t.walk(path+"/"+c.name, joinRel(rel, c.name), c, q)
		}
	}
}

func joinRel(rel, name string) string {
	if rel == "." {
		return name
	}
	return rel + "/" + name
}

// A jobQueue hands files from the walker to the workers. Unlike a channel,
// it costs no wake-up per file while work is plentiful: the walker queues
// a directory's files at once and waits only when far ahead (highWater
// jobs), until the workers are down to lowWater; a worker waits only when
// the queue is empty. The order of jobs does not matter.
type jobQueue struct {
	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	jobs     []job // a stack
	closed   bool
}

const (
	highWater = 8192
	lowWater  = highWater / 2
)

func newJobQueue() *jobQueue {
	q := &jobQueue{}
	q.notEmpty.L = &q.mu
	q.notFull.L = &q.mu
	return q
}

func (q *jobQueue) push(batch []job) {
	if len(batch) == 0 {
		return
	}
	q.mu.Lock()
	for len(q.jobs) >= highWater {
		q.notFull.Wait()
	}
	q.jobs = append(q.jobs, batch...)
	q.mu.Unlock()
	q.notEmpty.Broadcast()
}

// pop returns a job, or false once the queue is closed and empty.
func (q *jobQueue) pop() (job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) == 0 && !q.closed {
		q.notEmpty.Wait()
	}
	n := len(q.jobs)
	if n == 0 {
		return job{}, false
	}
	j := q.jobs[n-1]
	q.jobs[n-1] = job{}
	q.jobs = q.jobs[:n-1]
	if n-1 == lowWater {
		q.notFull.Signal()
	}
	return j, true
}

// close tells the workers that no more jobs will come.
func (q *jobQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.notEmpty.Broadcast()
}

// hashDirs computes the hash of every directory under and including n,
// children first, scanning entry names for references with m if not nil.
func hashDirs(n *node, h *blake3.Hasher, m *RefMatcher) {
	if n.kind != kindDir {
		return
	}
	for i := range n.children {
		hashDirs(&n.children[i], h, m)
	}
	h.Reset()
	_, _ = h.WriteString(dirHashPrefix)
	var lenBuf [binary.MaxVarintLen64]byte
	for i := range n.children {
		c := &n.children[i]
		_, _ = h.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(c.name))))
		_, _ = h.WriteString(c.name)
		_, _ = h.Write(c.hash[:])
		if m != nil {
			_, _ = m.WriteString(c.name)
			m.endStream()
		}
	}
	h.Sum(n.hash[:0])
}

// A worker hashes files and symlinks, one at a time, with its own buffer,
// hasher and reference matcher.
type worker struct {
	t     *treeHasher
	buf   []byte
	h     *blake3.Hasher
	m     *RefMatcher // nil without refs
	size  int64
	files int
}

func (t *treeHasher) newWorker() *worker {
	w := &worker{t: t, h: blake3.New()}
	if t.refs != nil {
		w.m = t.refs.NewMatcher()
	}
	return w
}

func (w *worker) hash(j job) error {
	switch j.n.kind {
	case kindSymlink:
		return w.hashSymlink(j)
	case kindFile:
		return w.hashFile(j)
	}
	panic("store: worker given a directory")
}

func (w *worker) hashSymlink(j job) error {
	target, err := os.Readlink(j.path)
	if err != nil {
		return w.t.errorf(j.rel, "%w", err)
	}
	w.h.Reset()
	_, _ = w.h.WriteString(symlinkHashPrefix)
	_, _ = w.h.WriteString(target)
	w.h.Sum(j.n.hash[:0])
	if w.m != nil {
		_, _ = w.m.WriteString(target)
		w.m.endStream()
	}
	w.size += int64(len(target))
	w.files++
	return nil
}

func (w *worker) hashFile(j job) error {
	fd, err := openNoFollow(j.path)
	if err != nil {
		return w.t.errorf(j.rel, "%w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return w.t.errorf(j.rel, "%w", &os.PathError{Op: "fstat", Path: j.path, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return w.t.errorf(j.rel, "changed while being hashed: no longer a regular file")
	}
	w.h.Reset()
	_, _ = w.h.WriteString(fileHashPrefix)
	if st.Mode&0o111 != 0 {
		_, _ = w.h.WriteString("x")
	} else {
		_, _ = w.h.WriteString("-")
	}
	if w.buf == nil {
		w.buf = make([]byte, readBufSize)
	}
	var total int64
	for {
		n, err := unix.Read(fd, w.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return w.t.errorf(j.rel, "%w", &os.PathError{Op: "read", Path: j.path, Err: err})
		}
		if n == 0 {
			break
		}
		_, _ = w.h.Write(w.buf[:n])
		if w.m != nil {
			_, _ = w.m.Write(w.buf[:n])
		}
		total += int64(n)
		if n < len(w.buf) && total == st.Size {
			// A short read of a regular file is its end, and the size
			// says so: skip the read that would return 0, a fifth of
			// the system calls for a small file.
			break
		}
	}
	if w.m != nil {
		w.m.endStream()
	}
	w.h.Sum(j.n.hash[:0])
	w.size += total
	w.files++
	return nil
}

// openNoFollow opens a file for reading without following a final symlink
// and without blocking should it have become a fifo.
func openNoFollow(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// info sums up what the workers saw.
func (t *treeHasher) info(hash [HashSize]byte, ws ...*worker) TreeInfo {
	info := TreeInfo{Hash: OutputHash(hash)}
	for _, w := range ws {
		info.Size += w.size
		info.Files += w.files
		if w.m != nil {
			info.Refs = mergeRefs(info.Refs, w.m.Found())
		}
	}
	return info
}

// mergeRefs returns the sorted union of two sorted lists.
func mergeRefs(a, b []DrvHash) []DrvHash {
	out := append(a, b...)
	slices.SortFunc(out, func(x, y DrvHash) int { return bytes.Compare(x[:], y[:]) })
	return slices.Compact(out)
}

// canonicalTime is the mtime (and atime) of every entry of a canonical
// output, as in Nix: Unix time 1, not 0, which some tools take for "unset".
var canonicalTime = []unix.Timespec{{Sec: 1}, {Sec: 1}}

// Canonicalize makes a finished build output at root store-ready: regular
// files become 0444, or 0555 if any exec bit was set; directories 0555;
// setuid, setgid and sticky bits go; symlinks keep their (meaningless) mode.
// Every entry, root included, gets atime and mtime Unix time 1, set on the
// entry itself, never through a symlink. A directory gets its mode and
// times after its children. Canonicalize never follows a symlink, and
// refuses devices, fifos and sockets with an error naming them relative to
// root; it may leave the tree half done then, as with any other error.
//
// The output hash does not depend on anything Canonicalize changes except
// through the exec bit, which it keeps; no process may change the tree
// meanwhile.
func Canonicalize(root string) error {
	if err := canonicalizeAt(unix.AT_FDCWD, root, root, "."); err != nil {
		return fmt.Errorf("canonicalizing %s: %w", root, err)
	}
	return nil
}

// canonicalizeAt canonicalizes name in dirfd, which is at path and at rel
// from the root.
func canonicalizeAt(dirfd int, name, path, rel string) error {
	var st unix.Stat_t
	if err := fstatatNoFollow(dirfd, name, path, &st); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
	case unix.S_IFREG:
		mode := uint32(0o444)
		if st.Mode&0o111 != 0 {
			mode = 0o555
		}
		if err := unix.Fchmodat(dirfd, name, mode, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	case unix.S_IFDIR:
		fd, names, err := openDir(dirfd, name, path, uint32(st.Mode), 0o500)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		slices.Sort(names) // so that the first bad entry is always the same
		for _, c := range names {
			crel := c
			if rel != "." {
				crel = rel + "/" + c
			}
			if err := canonicalizeAt(fd, c, path+"/"+c, crel); err != nil {
				return err
			}
		}
		if err := unix.Fchmod(fd, 0o555); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	default:
		return fmt.Errorf("%s: unsupported file type %s (only regular files, directories and symlinks may be in an output)",
			rel, describeType(unixType(uint32(st.Mode))))
	}
	if err := unix.UtimesNanoAt(dirfd, name, canonicalTime, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: path, Err: err}
	}
	return nil
}

// unixType maps the file type bits of a stat mode to an fs.FileMode type.
func unixType(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// RemoveTree deletes the file tree at path, as os.RemoveAll does, even when
// it is read-only: it gives each directory u+rwx before emptying it. It
// never follows a symlink, so it cannot leave the tree; a symlink at path
// itself is removed, not its target. Like os.RemoveAll it returns nil if
// path does not exist, and otherwise the first error, after deleting all it
// could. The directory holding path must be writable. Paths whose last
// element is ".", ".." or "/" are refused.
func RemoveTree(path string) error {
	if base := filepath.Base(path); base == "." || base == ".." || base == "/" {
		return fmt.Errorf("removing tree %q: refusing to remove %s", path, base)
	}
	if err := removeAt(unix.AT_FDCWD, path, path); err != nil {
		return fmt.Errorf("removing tree %s: %w", path, err)
	}
	return nil
}

// removeAt removes name in dirfd, which is at path.
func removeAt(dirfd int, name, path string) error {
	err := unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	var st unix.Stat_t
	if serr := fstatatNoFollow(dirfd, name, path, &st); serr != nil {
		if errors.Is(serr, unix.ENOENT) {
			return nil
		}
		return serr
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &os.PathError{Op: "unlink", Path: path, Err: err}
	}
	fd, names, err := openDir(dirfd, name, path, uint32(st.Mode), 0o700)
	if err != nil {
		return err
	}
	var first error
	for _, c := range names {
		if err := removeAt(fd, c, path+"/"+c); err != nil && first == nil {
			first = err
		}
	}
	unix.Close(fd)
	if first != nil {
		return first
	}
	if err := unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}

func unlinkat(dirfd int, name string, flags int) error {
	for {
		err := unix.Unlinkat(dirfd, name, flags)
		if err != unix.EINTR {
			return err
		}
	}
}

func fstatatNoFollow(dirfd int, name, path string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		return nil
	}
}

// openDir opens the directory name in dirfd (at path) without following a symlink,
// first adding the owner permissions need (0o500 to list it, 0o700 to
// empty it too), and reads its entry names. The caller closes fd.
func openDir(dirfd int, name, path string, mode, need uint32) (fd int, names []string, err error) {
	if mode&need != need {
		if err := unix.Fchmodat(dirfd, name, mode&0o7777|need, 0); err != nil {
			return -1, nil, &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	}
	for {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return -1, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	// Read the names through a duplicate, which os.File may close.
	dup, err := unix.Dup(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, &os.PathError{Op: "dup", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(dup), path)
	names, err = f.Readdirnames(-1)
	f.Close()
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, names, nil
}
