package modfetch

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/module"
)

// ModFilesDir is where the go.mod files of a module graph lie below the
// output of builtin:fetch-gomod-graph (and so below the tree its pin
// hashes): as in a module cache, ModFilesDir/ESCAPED-PATH/@v/ESCAPED-VERSION.mod
// (GoModSum.File).
const ModFilesDir = "cache/download"

// LinkModule lays out the pinned module mod, extracted at dir, in the
// module cache at modcache as the go command leaves a module it
// downloaded: the module's directory, a link to dir, and in the download
// cache its go.mod (the one a proxy makes up for a module without one),
// its h1: sum and its version. The go command then uses it offline.
func LinkModule(modcache string, mod module.Version, sum, dir string) error {
	ep, err := module.EscapePath(mod.Path)
	if err != nil {
		return err
	}
	ev, err := module.EscapeVersion(mod.Version)
	if err != nil {
		return err
	}
	link := filepath.Join(modcache, filepath.FromSlash(ep)+"@"+ev)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(dir, link); err != nil {
		return err
	}
	dl := filepath.Join(modcache, "cache", "download", filepath.FromSlash(ep), "@v")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		gomod = []byte("module " + quotedPath(mod.Path) + "\n")
	}
	files := map[string][]byte{
		ev + ".mod":     gomod,
		ev + ".ziphash": []byte(sum + "\n"),
		ev + ".info":    fmt.Appendf(nil, "{\"Version\":%q}\n", mod.Version),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dl, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// quotedPath is a module path as a go.mod's module directive writes it.
func quotedPath(p string) string {
	if strings.ContainsAny(p, " \t\"") {
		return fmt.Sprintf("%q", p)
	}
	return p
}

// LinkModFiles adds the go.mod files below tree/ModFilesDir (the output
// of builtin:fetch-gomod-graph) to the download cache of the module cache
// at modcache, each a link to its file, unless a pinned module's go.mod
// is there already (LinkModule). It returns how many it added.
func LinkModFiles(modcache, tree string) (int, error) {
	root := filepath.Join(tree, filepath.FromSlash(ModFilesDir))
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".mod") {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		target := filepath.Join(modcache, "cache", "download", rel)
		if _, err := os.Lstat(target); err == nil {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		n++
		return os.Symlink(p, target)
	})
	return n, err
}
