package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/zeebo/blake3"

	"hephc.dev/hephc/defs"
)

func absPath(cwd, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(cwd, p)
}

// cacheDir is where hephc keeps caches: HEPHC_CACHE, else
// $XDG_CACHE_HOME/hephc, else ~/.cache/hephc.
func cacheDir(e *env) string {
	if d := e.getenv("HEPHC_CACHE"); d != "" {
		return d
	}
	if d := e.getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "hephc")
	}
	if h := e.getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "hephc")
	}
	return filepath.Join(os.TempDir(), "hephc-cache")
}

// buildID identifies this hephc for caches: its executable (path, size,
// modification time: a rebuilt hephc misses) and its schema.
var buildID = sync.OnceValue(func() string {
	h := blake3.New()
	if exe, err := os.Executable(); err == nil {
		if fi, err := os.Stat(exe); err == nil {
			fmt.Fprintf(h, "%s\x00%d\x00%d\x00", exe, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	files := defs.Files()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	var sum [32]byte
	return fmt.Sprintf("%x", h.Sum(sum[:0]))
})
