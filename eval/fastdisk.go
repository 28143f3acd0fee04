package eval

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zeebo/blake3"
)

// FileCache keeps on disk, for the fast path, what Fast extracted from
// each file (its declarations, decoded) and what linking made of them
// (each declaration's inputs' hashes and its derivation's hash), so that a
// new process after an edit parses only the edited files and hashes only
// the derivations whose inputs changed.
//
// There is one entry per file name and hephc build, a flat binary record
// (cachecodec.go's encoding) under a checksum; it holds the build, the
// file's name and its content's hash, and is used only when all three are
// the file's as read now. Anything else — another build or format, a file
// since edited, a damaged or truncated entry, a length beyond the entry's
// end, a symbolic link, a file another user owns or others may write — is
// a miss: the file is parsed again and its entry rewritten. Entries are
// written atomically (a temporary file renamed); the directory is kept
// under MaxBytes by removing the entries used least recently.
//
// Like the evaluation cache, it trusts what this user wrote: a checksum
// is no signature.
type FileCache struct {
	// Dir holds the entries (made when first written).
	Dir string
	// Build identifies the hephc (its executable and schema) that
	// evaluates: another build misses.
	Build string
	// MaxBytes bounds the entries' total size; 0 means
	// DefaultFileCacheBytes.
	MaxBytes int64
	// Fresh writes entries but reads none: for an evaluation asked not
	// to use what caches hold (hephc eval --no-cache).
	Fresh bool
}

// DefaultFileCacheBytes is the default bound of a FileCache's size: about
// fifty configurations of 10,000 packages.
const DefaultFileCacheBytes = 128 << 20

// fileCacheFormat changes whenever the entry's format or the meaning of
// what it holds changes.
const fileCacheFormat = "hephc-fast-file-3\n"

// maxEntry is the largest entry read: a larger file is not one this
// cache wrote for a configuration anyone evaluates.
const maxEntry = 64 << 20

// touchAfter is how old an entry's modification time may be before a read
// renews it (the least recently used are removed first).
const touchAfter = time.Hour

// name is the entry's file name for a configuration file.
func (c *FileCache) name(file string) string {
	h := blake3.New()
	h.WriteString(fileCacheFormat)
	h.WriteString(c.Build)
	h.Write([]byte{0})
	h.WriteString(file)
	var sum [32]byte
	return filepath.Join(c.Dir, hexString(h.Sum(sum[:0])))
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// load returns what fl's entry holds, or nil when there is no entry for fl
// as it is now (a miss of any kind).
func (c *FileCache) load(fl File) *fastFile {
	if c == nil || c.Fresh {
		return nil
	}
	b, ok := readEntry(c.name(fl.Name))
	if !ok {
		return nil
	}
	ff, ok := decodeFileEntry(b, c.Build, fl)
	if !ok {
		return nil
	}
	return ff
}

// readEntry reads an entry that is a regular file of this user's that no
// one else may write, not through a symbolic link, and not larger than
// maxEntry; it renews the entry's modification time when it is old.
func readEntry(p string) ([]byte, bool) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 || fi.Size() > maxEntry {
		return nil, false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return nil, false
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, false
	}
	if time.Since(fi.ModTime()) > touchAfter {
		now := time.Now()
		os.Chtimes(p, now, now) // only the order of removal depends on it
	}
	return b, true
}

// store writes the entries of the files that are not on disk as they are
// now, then keeps the directory under its bound. Errors only cost time:
// they are ignored.
func (c *FileCache) store(ffs []*fastFile) {
	var todo []*fastFile
	for _, ff := range ffs {
		if ff.dirty {
			todo = append(todo, ff)
		}
	}
	if len(todo) == 0 {
		return
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return
	}
	work := make(chan *fastFile)
	var wg sync.WaitGroup
	for range min(len(todo), runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ff := range work {
				if writeEntry(c.name(ff.name), encodeFileEntry(c.Build, ff)) == nil {
					ff.dirty = false
				}
			}
		}()
	}
	for _, ff := range todo {
		work <- ff
	}
	close(work)
	wg.Wait()
	c.prune()
}

// writeEntry writes b to p atomically.
func writeEntry(p string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if os.Rename(tmp.Name(), p) == nil {
		return nil
	}
	os.Remove(p) // not a file (an empty directory): in the way
	return os.Rename(tmp.Name(), p)
}

// prune removes the entries used least recently while the directory holds
// more than MaxBytes, down to three quarters of it, and temporary files a
// writer left more than an hour ago.
func (c *FileCache) prune() {
	max := c.MaxBytes
	if max <= 0 {
		max = DefaultFileCacheBytes
	}
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return
	}
	type entry struct {
		path string
		size int64
		mod  time.Time
	}
	var es []entry
	var total int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		p := filepath.Join(c.Dir, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") {
			if time.Since(fi.ModTime()) > time.Hour {
				os.Remove(p)
			}
			continue
		}
		es = append(es, entry{p, fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	if total <= max {
		return
	}
	sort.Slice(es, func(i, j int) bool { return es[i].mod.Before(es[j].mod) })
	for _, e := range es {
		if total <= max/4*3 {
			break
		}
		if os.Remove(e.path) == nil {
			total -= e.size
		}
	}
}
