package sandbox

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
)

// libDirs are searched, in order, for the shared libraries a dynamically
// linked executable needs. They are the dynamic loader's default directories
// on Debian-like systems, so a library found here is also found by the loader
// inside the sandbox, where it is mounted at the same path.
var libDirs = func() []string {
	var dirs []string
	if triplet := map[string]string{
		"amd64": "x86_64-linux-gnu",
		"arm64": "aarch64-linux-gnu",
	}[runtime.GOARCH]; triplet != "" {
		dirs = append(dirs, "/lib/"+triplet, "/usr/lib/"+triplet)
	}
	return append(dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}()

var exeLibsOnce = sync.OnceValues(func() ([]string, error) {
	return elfDeps("/proc/self/exe", libDirs)
})

// exeLibs returns the host paths of the dynamic loader and the shared
// libraries this executable needs, or nothing if it is statically linked.
func exeLibs() ([]string, error) { return exeLibsOnce() }

// elfDeps returns the program interpreter of the ELF executable exe and the
// transitive closure of the libraries it imports, each found in dirs, sorted.
// A static executable has none.
func elfDeps(exe string, dirs []string) ([]string, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("sandbox: reading executable: %w", err)
	}
	defer f.Close()
	interp, err := elfInterp(f)
	if err != nil {
		return nil, fmt.Errorf("sandbox: reading %s: %w", exe, err)
	}
	if interp == "" {
		return nil, nil
	}
	found := map[string]string{} // library name → host path
	paths := []string{interp}
	var visit func(who string, f *elf.File) error
	visit = func(who string, f *elf.File) error {
		names, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("sandbox: reading %s: %w", who, err)
		}
		for _, name := range names {
			if _, ok := found[name]; ok {
				continue
			}
			p, lf, err := findLib(name, dirs, f.Class, f.Machine)
			if err != nil {
				return fmt.Errorf("sandbox: finding %s, needed by %s: %w", name, who, err)
			}
			found[name] = p
			paths = append(paths, p)
			err = visit(p, lf)
			lf.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(exe, f); err != nil {
		return nil, err
	}
	sort.Strings(paths)
	return paths, nil
}

// elfInterp returns the program interpreter named by f's PT_INTERP header,
// or "" if it has none.
func elfInterp(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("reading PT_INTERP: %w", err)
		}
		for len(b) > 0 && b[len(b)-1] == 0 {
			b = b[:len(b)-1]
		}
		return string(b), nil
	}
	return "", nil
}

// findLib finds the shared library name in dirs, skipping files of another
// ELF class or machine (as the loader does).
func findLib(name string, dirs []string, class elf.Class, machine elf.Machine) (string, *elf.File, error) {
	if filepath.IsAbs(name) {
		f, err := elf.Open(name)
		return name, f, err
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		f, err := elf.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		if f.Class == class && f.Machine == machine {
			return p, f, nil
		}
		f.Close()
	}
	return "", nil, fmt.Errorf("not found in %v: %w", dirs, fs.ErrNotExist)
}
