package lang

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/zeebo/blake3"
)

// Source is one file of a configuration as read, for evaluation without
// CUE's loader (eval.Fast, which parses it when its Sum is new to it).
type Source struct {
	Name string // absolute
	Sum  [32]byte
	Src  []byte
}

// Simple returns the .cue files that make up the configuration args name
// (as Load resolves them) when they are all there is to it: no cue.mod
// directory (whose module file or packages a file could import), and no
// file the loader would leave out or treat apart (names starting with .
// or _, _test.cue, _tool.cue), in the directory or among the files named.
// ok=false means the configuration is to be loaded with Load.
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
			if !strings.HasSuffix(e.Name(), ".cue") {
				continue
			}
			if !e.Type().IsRegular() {
				return "", nil, false
			}
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	for _, f := range files {
		n := filepath.Base(f)
		if strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") ||
			strings.HasSuffix(n, "_test.cue") || strings.HasSuffix(n, "_tool.cue") {
			return "", nil, false
		}
	}
	sort.Strings(files)
	for i := 1; i < len(files); i++ {
		if files[i] == files[i-1] {
			return "", nil, false // named twice: Load says what it makes of it
		}
	}
	return dir, files, len(files) > 0
}

// ReadSources reads files and identifies each by its content's BLAKE3
// hash. ok=false when a file cannot be read or is not UTF-8: Load says
// why.
func ReadSources(files []string) ([]Source, bool) {
	out := make([]Source, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !utf8.Valid(b) {
			return nil, false
		}
		out[i] = Source{Name: f, Sum: blake3.Sum256(b), Src: b}
	}
	return out, true
}
