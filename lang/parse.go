package lang

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
	"github.com/zeebo/blake3"
)

// Parsed is one file of a configuration as parsed, for evaluation without
// CUE's loader (eval.Fast).
type Parsed struct {
	Name string // absolute
	Sum  [32]byte
	File *ast.File
}

// ParseCache parses files in parallel and keeps each parsed file by its
// name and content, so that a file read again unchanged is not parsed
// again. Its zero value is ready to use; it is safe for concurrent use.
type ParseCache struct {
	mu    sync.Mutex
	files map[string]*Parsed
}

// Simple returns the .cue files that make up the configuration args name
// (as Load resolves them) when they are all there is to it: no cue.mod
// directory (whose module file or packages a file could import), and,
// for a directory, no file the loader would leave out or treat apart
// (names starting with . or _, _test.cue, _tool.cue). ok=false means the
// configuration is to be loaded with Load.
func (l *Loader) Simple(args ...string) (dir string, files []string, ok bool) {
	dir, files, err := l.resolve(args)
	if err != nil {
		return "", nil, false
	}
	if _, err := os.Lstat(filepath.Join(dir, "cue.mod")); err == nil {
		return "", nil, false
	}
	if len(files) == 0 {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return "", nil, false
		}
		for _, e := range ents {
			n := e.Name()
			if !strings.HasSuffix(n, ".cue") {
				continue
			}
			if !e.Type().IsRegular() || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") ||
				strings.HasSuffix(n, "_test.cue") || strings.HasSuffix(n, "_tool.cue") {
				return "", nil, false
			}
			files = append(files, filepath.Join(dir, n))
		}
	} else {
		for _, f := range files {
			n := filepath.Base(f)
			if strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") ||
				strings.HasSuffix(n, "_test.cue") || strings.HasSuffix(n, "_tool.cue") {
				return "", nil, false
			}
		}
	}
	sort.Strings(files)
	files = compact(files)
	return dir, files, len(files) > 0
}

func compact(s []string) []string {
	out := s[:0]
	for i, f := range s {
		if i == 0 || f != s[i-1] {
			out = append(out, f)
		}
	}
	return out
}

// Parse reads and parses files (absolute) in parallel, each only when its
// content changed since this cache last parsed it. ok=false when a file
// cannot be read, is not UTF-8 or does not parse: Load says why.
func (c *ParseCache) Parse(files []string) (out []*Parsed, ok bool) {
	out = make([]*Parsed, len(files))
	failed := make([]bool, len(files))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(len(files), runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i], failed[i] = c.parse(files[i])
			}
		}()
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()
	for _, f := range failed {
		if f {
			return nil, false
		}
	}
	return out, true
}

func (c *ParseCache) parse(name string) (*Parsed, bool) {
	b, err := os.ReadFile(name)
	if err != nil || !utf8.Valid(b) {
		return nil, true
	}
	sum := blake3.Sum256(b)
	c.mu.Lock()
	p := c.files[name]
	c.mu.Unlock()
	if p != nil && p.Sum == sum {
		return p, false
	}
	f, err := parser.ParseFile(name, b)
	if err != nil {
		return nil, true
	}
	p = &Parsed{Name: name, Sum: sum, File: f}
	c.mu.Lock()
	if c.files == nil {
		c.files = make(map[string]*Parsed)
	}
	c.files[name] = p
	c.mu.Unlock()
	return p, false
}
