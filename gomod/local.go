package gomod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/modfile"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/localsrc"
)

// LocalSource copies the local source rel beneath the configuration's
// directory dir, as builtin:fetch-file copies a #LocalFile (through f,
// never outside dir), into a temporary directory of its own and returns
// it with the hash of the copy, the #LocalFile's pin. Its Module is not
// set unless the copy is a directory with a go.mod: then it is a main
// module to resolve (Path from its go.mod, no Version, no Sum), its go.mod
// checked as FetchSource checks a fetched one's.
func LocalSource(dir, rel string, f localsrc.Filter) (*Source, string, error) {
	tmp, err := os.MkdirTemp("", "hephc-local-")
	if err != nil {
		return nil, "", err
	}
	s := &Source{Dir: filepath.Join(tmp, "src"), tmp: tmp}
	if _, err := localsrc.Copy(dir, rel, f, s.Dir, 0); err != nil {
		s.Close()
		var esc *localsrc.EscapeError
		if errors.As(err, &esc) {
			return nil, "", fmt.Errorf("%s leads outside the configuration's directory %s (a symbolic link on the way, or it is one): hephc reads nothing outside it", rel, dir)
		}
		return nil, "", err
	}
	info, err := fstree.HashTree(s.Dir, fstree.HashOptions{})
	if err != nil {
		s.Close()
		return nil, "", fmt.Errorf("%s: %w", rel, err)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, "go.mod"))
	if err != nil {
		return s, info.Hash.String(), nil // not a module
	}
	mf, err := modfile.ParseLax(filepath.Join(rel, "go.mod"), b, nil)
	if err != nil || mf.Module == nil {
		s.Close()
		return nil, "", fmt.Errorf("%s/go.mod: declares no module: %v", rel, err)
	}
	s.Path = mf.Module.Mod.Path
	if err := s.readGoMod(); err != nil {
		s.Close()
		return nil, "", fmt.Errorf("%s (%s): %w", rel, s.Path, err)
	}
	return s, info.Hash.String(), nil
}
