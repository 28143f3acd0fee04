package fstree

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"runtime"
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

// bufSize is the read buffer for a file of size bytes: one more than its
// size, in pages, so that one read takes it whole and says it ended, up
// to readBufSize. Most outputs are small: clearing 1 MiB for each tree
// hashed cost more than hashing a small one (BenchmarkInstall).
func bufSize(size int64) int {
	if size >= readBufSize {
		return readBufSize
	}
	return int(size+4096) &^ 4095
}

// A Scanner is shown every byte HashTree reads, in the same pass: each
// regular file's contents, each symlink's target and each entry's name,
// every one a stream of its own. The store finds references this way.
type Scanner interface {
	// NewMatcher returns a Matcher for one of HashTree's goroutines. It
	// is called from several goroutines at once.
	NewMatcher() Matcher
}

// A Matcher is fed streams, one after another, by one goroutine.
type Matcher interface {
	// Write continues the current stream; it never fails.
	Write(p []byte) (int, error)
	// EndStream ends the current stream: the next Write starts another.
	EndStream()
}

// HashOptions configures HashTree.
type HashOptions struct {
	// Scan, if not nil, is shown every file's contents, every symlink's
	// target and every entry's name.
	Scan Scanner
	// Workers is how many goroutines read and hash files, besides the one
	// that walks directories; 0 means GOMAXPROCS.
	Workers int
}

// TreeInfo is what HashTree learns about a tree.
type TreeInfo struct {
	// Hash is the canonical hash of the tree.
	Hash Hash
	// Size is the sum of the sizes of the regular files and the lengths of
	// the symlink targets.
	Size int64
	// Files counts regular files and symlinks (every entry but directories).
	Files int
}

// HashTree returns the canonical hash of the file tree at root, in the
// format docs/store.md describes: a Merkle hash over file contents, exec
// bits, symlink targets and entry names, and nothing else. root is not
// followed if it is a symlink; it may be a regular file or a symlink as
// well as a directory. Other file types (devices, fifos, sockets) are
// errors that name the entry relative to root.
//
// Each file is read once, hashed and shown to opt.Scan in the same pass.
// Files are hashed by a pool of opt.Workers goroutines while one
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
	t := &treeHasher{root: root, scan: opt.Scan}
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
	var m Matcher
	if t.scan != nil {
		m = t.scan.NewMatcher()
	}
	hashDirs(&top, blake3.New(), m)
	return t.info(top.hash, ws...), nil
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
	scan Scanner

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

// hashDirs computes the hash of every directory under and including n,
// children first, showing entry names to m if not nil.
func hashDirs(n *node, h *blake3.Hasher, m Matcher) {
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
			_, _ = m.Write([]byte(c.name))
			m.EndStream()
		}
	}
	h.Sum(n.hash[:0])
}

// A worker hashes files and symlinks, one at a time, with its own buffer,
// hasher and matcher.
type worker struct {
	t     *treeHasher
	buf   []byte
	h     *blake3.Hasher
	m     Matcher // nil without a Scanner
	size  int64
	files int
}

func (t *treeHasher) newWorker() *worker {
	w := &worker{t: t, h: blake3.New()}
	if t.scan != nil {
		w.m = t.scan.NewMatcher()
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
	panic("fstree: worker given a directory")
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
		_, _ = w.m.Write([]byte(target))
		w.m.EndStream()
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
	if len(w.buf) < readBufSize && int64(len(w.buf)) <= st.Size {
		w.buf = make([]byte, bufSize(st.Size))
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
		w.m.EndStream()
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
	info := TreeInfo{Hash: Hash(hash)}
	for _, w := range ws {
		info.Size += w.size
		info.Files += w.files
	}
	return info
}
