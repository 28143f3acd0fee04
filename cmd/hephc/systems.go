package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"cuelang.org/go/cue"
	"github.com/spf13/pflag"

	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/store"
)

// A system is a root whose output is a system toplevel: a directory with
// a kernel, an initrd and a cmdline, what `hephc boot` boots. Realize
// links each system of a realization with several roots as
// ./result-NAME, and boot takes a system of a generation by NAME: the
// last label of its attribute path (images.workstation is workstation),
// or the whole attribute path where two systems share a last label.

// toplevelParts are the files a system toplevel has.
var toplevelParts = []string{"kernel", "initrd", "cmdline"}

// toplevelMissing lists the parts of a toplevel dir lacks.
func toplevelMissing(dir string) []string {
	var missing []string
	for _, f := range toplevelParts {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || !fi.Mode().IsRegular() {
			missing = append(missing, f)
		}
	}
	return missing
}

type system struct {
	name, attr string
	path       store.Path
	dir        string // physical
}

// systemsOf returns the roots (attribute path to store path) that are
// system toplevels, found at physical(path), named, sorted by name.
func systemsOf(roots map[string]store.Path, physical func(store.Path) string) []system {
	var attrs []string
	for attr, p := range roots {
		if len(toplevelMissing(physical(p))) == 0 {
			attrs = append(attrs, attr)
		}
	}
	var out []system
	for name, attr := range systemNames(attrs) {
		out = append(out, system{name: name, attr: attr, path: roots[attr], dir: physical(roots[attr])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// systemNames names systems by their attribute paths: the last label, or
// the whole path where two share a last label; characters a file name
// should not have become _.
func systemNames(attrs []string) map[string]string {
	last := func(attr string) string {
		if sels := cue.ParsePath(attr).Selectors(); len(sels) > 0 && sels[len(sels)-1].LabelType() == cue.StringLabel {
			return sels[len(sels)-1].Unquoted()
		}
		return attr
	}
	count := map[string]int{}
	for _, a := range attrs {
		count[last(a)]++
	}
	names := map[string]string{}
	for _, a := range attrs {
		n := last(a)
		if count[n] > 1 {
			n = a
		}
		names[fileSafe(n)] = a
	}
	return names
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r) {
			return r
		}
		return '_'
	}, s)
}

func systemList(systems []system) string {
	return strings.Join(systemNamesOf(systems), ", ")
}

// bootChoice is what boot boots: a toplevel's physical directory, its
// name in messages, and a line saying which system it is.
type bootChoice struct {
	dir, name, note string
}

// bootTarget resolves boot's argument. A PATH (with a /) is a toplevel
// or a generation object. Otherwise boot follows the profile: no
// argument is the only system of the profile's current generation (or of
// --generation N), a NAME is one of its systems. When the profile has no
// generations (and neither --profile nor --generation is given), boot
// takes the argument as a path, by default ./result.
func bootTarget(e *env, fs *pflag.FlagSet, args []string) (*bootChoice, error) {
	profileName, _ := fs.GetString("profile")
	number, _ := fs.GetInt("generation")
	if number < 0 {
		return nil, usagef("--generation wants a generation number, got %d", number)
	}
	byProfile := fs.Changed("profile") || fs.Changed("generation")
	arg := ""
	if len(args) == 1 {
		arg = args[0]
	}
	if !byProfile && (strings.ContainsRune(arg, '/') || arg == "." || arg == "..") {
		return bootPath(e, arg)
	}
	g, physical, err := bootGeneration(e, profileName, number, byProfile)
	if err != nil {
		return nil, err
	}
	if g == nil { // no generations: a path
		if arg == "" {
			return bootPath(e, "./result")
		}
		return bootPath(e, arg)
	}
	systems := systemsOf(g.Roots, physical)
	which := fmt.Sprintf("generation %d of profile %s", g.Number, g.Profile)
	if arg == "" {
		switch len(systems) {
		case 0:
			return nil, fmt.Errorf("%s has no system toplevel among its roots (%s)", which, strings.Join(slices.Sorted(maps.Keys(g.Roots)), ", "))
		case 1:
			return systems[0].target(which), nil
		}
		return nil, fmt.Errorf("%s has %d systems: name one (hephc boot %s)", which, len(systems), strings.Join(systemNamesOf(systems), ", hephc boot "))
	}
	for _, s := range systems {
		if arg == s.name || arg == s.attr {
			return s.target(which), nil
		}
	}
	if _, err := os.Lstat(absPath(e.cwd, arg)); err == nil && !byProfile {
		return bootPath(e, arg)
	}
	if len(systems) == 0 {
		return nil, fmt.Errorf("%s has no system %s: it has no system toplevel among its roots", which, arg)
	}
	return nil, fmt.Errorf("%s has no system %s (it has %s)", which, arg, systemList(systems))
}

func systemNamesOf(systems []system) []string {
	names := make([]string, len(systems))
	for i, s := range systems {
		names[i] = s.name
	}
	return names
}

func (s system) target(which string) *bootChoice {
	return &bootChoice{dir: s.dir, name: s.dir, note: fmt.Sprintf("booting %s (%s) of %s: %s", s.name, s.attr, which, s.dir)}
}

// bootGeneration returns generation n (0: the current one) of the
// profile, and where its paths are. With must false, a store or profile
// that does not exist is no generation, not an error; the store is never
// created.
func bootGeneration(e *env, profileName string, n int, must bool) (*profile.Generation, func(store.Path) string, error) {
	dir, err := storeDir(e)
	if err != nil {
		if must {
			return nil, nil, err
		}
		return nil, nil, nil
	}
	if _, err := os.Stat(filepath.Join(dir, store.DBFile)); errors.Is(err, fs.ErrNotExist) {
		if must {
			return nil, nil, fmt.Errorf("profile %s has no generations: there is no store at %s (hephc realize builds one)", profileName, dir)
		}
		return nil, nil, nil
	}
	st, err := store.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	ctx := context.Background()
	gens, err := profile.List(ctx, st, profileName)
	if err != nil {
		return nil, nil, err
	}
	if len(gens) == 0 && !must {
		return nil, nil, nil
	}
	g, err := profile.Get(ctx, st, profileName, n)
	if err != nil {
		return nil, nil, err
	}
	return g, st.Physical, nil
}

// bootPath boots the toplevel at path, or the one system of the
// generation object at path (such as the store's profiles/NAME).
func bootPath(e *env, path string) (*bootChoice, error) {
	abs := absPath(e.cwd, path)
	dir, err := filepath.EvalSymlinks(abs)
	if err != nil || len(toplevelMissing(dir)) == 0 {
		return &bootChoice{dir: abs, name: path}, nil // qemuArgs says what is wrong
	}
	obj, err := profile.ReadObject(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return &bootChoice{dir: abs, name: path}, nil
	} else if err != nil {
		return nil, err
	}
	// A generation object's roots are its siblings in the physical store.
	systems := systemsOf(obj.Roots, func(p store.Path) string { return filepath.Join(filepath.Dir(dir), p.Base()) })
	which := fmt.Sprintf("the generation of profile %s at %s", obj.Profile, path)
	switch len(systems) {
	case 0:
		return nil, fmt.Errorf("%s has no system toplevel among its roots", which)
	case 1:
		return systems[0].target(which), nil
	}
	return nil, fmt.Errorf("%s has %d systems (%s): name one, as in hephc boot --profile %s [--generation N] %s", which, len(systems), systemList(systems), obj.Profile, systems[0].name)
}
