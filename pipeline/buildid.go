package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/zeebo/blake3"

	"hephc.dev/hephc/defs"
)

// CacheDir is where hephc keeps caches, given the environment:
// HEPHC_CACHE, else $XDG_CACHE_HOME/hephc, else ~/.cache/hephc, else a
// directory in the system's temporary directory.
func CacheDir(getenv func(string) string) string {
	if d := getenv("HEPHC_CACHE"); d != "" {
		return d
	}
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "hephc")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "hephc")
	}
	return filepath.Join(os.TempDir(), "hephc-cache")
}

// BuildID identifies this hephc for caches: its executable (path, size,
// modification time: a rebuilt hephc misses) and its schema. It is
// computed once per process.
var BuildID = sync.OnceValue(func() string {
	h := blake3.New()
	if exe, err := os.Executable(); err == nil {
		if fi, err := os.Stat(exe); err == nil {
			fmt.Fprintf(h, "%s\x00%d\x00%d\x00", exe, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	files := defs.Files()
	for _, n := range defs.Names() {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	var sum [32]byte
	return fmt.Sprintf("%x", h.Sum(sum[:0]))
})
