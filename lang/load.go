// Package lang loads hephc configurations (.cue files that import the
// embedded schema hephc.dev/heph, evaluated with cue/load) and says every
// error as diagnostics that name file, line and column: Report is hephc's
// one error printer, CUE's errors said plainly, hephc's own (lang.Exact)
// as they are.
package lang

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/load"

	"hephc.dev/hephc/defs"
)

// Config is a loaded configuration: the evaluated value and the files it
// came from.
type Config struct {
	Value cue.Value
	// Files are the configuration's own .cue files (absolute, sorted); the
	// schema is not among them.
	Files []string
	// Dir is the directory the files live in.
	Dir string
	// Deps are all the files the evaluation read other than the schema:
	// the configuration's files, imported packages' files and cue.mod
	// files on disk (absolute, sorted). Dirs are the directories whose
	// .cue files make up a loaded package. A cache keyed by their content
	// is valid while they are unchanged.
	Deps, Dirs []string
	// syntax is the configuration's files as parsed, for Hint.
	syntax []*ast.File
}

// Loader loads configurations. Its zero value is not usable; use NewLoader.
type Loader struct {
	ctx *cue.Context
	// Cwd is the directory diagnostics are relative to.
	Cwd  string
	defs map[string]cue.Value // by name, built once
}

// NewLoader returns a loader with a fresh CUE context whose diagnostics are
// relative to cwd.
func NewLoader(cwd string) *Loader {
	return &Loader{ctx: cuecontext.New(), Cwd: cwd}
}

// Context returns the CUE context values are built in.
func (l *Loader) Context() *cue.Context { return l.ctx }

// Load loads args: .cue files of one directory, or one directory. With no
// args it loads the current directory.
func (l *Loader) Load(args ...string) (*Config, error) {
	dir, files, err := l.resolve(args)
	if err != nil {
		return nil, err
	}
	cfg := loadConfig(dir)
	loadArgs := files
	if len(files) == 0 {
		loadArgs = []string{"."}
	} else {
		loadArgs = make([]string, len(files))
		for i, f := range files {
			loadArgs[i] = "./" + filepath.Base(f)
		}
	}
	insts := load.Instances(loadArgs, cfg)
	if len(insts) != 1 {
		return nil, fmt.Errorf("loading %s: want one CUE package, found %d", strings.Join(args, " "), len(insts))
	}
	inst := insts[0]
	named := files
	if len(named) == 0 {
		named, _ = filepath.Glob(filepath.Join(dir, "*.cue"))
	}
	if ds := l.checkUTF8(inst, named); len(ds) > 0 {
		return nil, ds
	}
	if inst.Err != nil {
		ds := l.Diagnose(inst.Err)
		for i := range ds {
			if strings.HasPrefix(ds[i].Msg, "found packages ") {
				ds[i].Msg += ": the .cue files of a directory are one configuration, with one package clause; name the files to load some of them (e.g. hephc eval system.cue), and give a policy.cue beside them their package"
			}
		}
		return nil, ds
	}
	// Errors inside the value (a conflict, a field the schema does not
	// allow, a dependency cycle) are left to package eval, which walks the
	// value and reports every one of them with its position; v.Err() would
	// report only the first.
	v := l.ctx.BuildInstance(inst)
	c := &Config{Value: v, Dir: dir, syntax: inst.Files}
	for _, f := range inst.BuildFiles {
		c.Files = append(c.Files, f.Filename)
	}
	sort.Strings(c.Files)
	c.Deps, c.Dirs = deps(inst, dir)
	return c, nil
}

// deps lists the files and package directories inst was built from,
// leaving out the schema (which hephc's version covers).
func deps(inst *build.Instance, dir string) (files, dirs []string) {
	seenFile := make(map[string]bool)
	seenDir := make(map[string]bool)
	var walk func(*build.Instance)
	walk = func(in *build.Instance) {
		for _, f := range in.BuildFiles {
			if defs.IsSchemaFile(f.Filename) || seenFile[f.Filename] {
				continue
			}
			seenFile[f.Filename] = true
			files = append(files, f.Filename)
			d := filepath.Dir(f.Filename)
			if !seenDir[d] {
				seenDir[d] = true
				dirs = append(dirs, d)
			}
		}
		for _, imp := range in.Imports {
			walk(imp)
		}
	}
	walk(inst)
	if _, err := os.Stat(filepath.Join(dir, "cue.mod", "module.cue")); err == nil {
		files = append(files, filepath.Join(dir, "cue.mod", "module.cue"))
	}
	sort.Strings(files)
	sort.Strings(dirs)
	return files, dirs
}

// resolve turns the command-line arguments into one absolute directory and
// the absolute files in it (none for a whole directory).
func (l *Loader) resolve(args []string) (dir string, files []string, err error) {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join(l.Cwd, p)
	}
	if len(args) == 0 {
		return l.Cwd, nil, nil
	}
	for _, a := range args {
		p := abs(a)
		fi, err := os.Stat(p)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", nil, fmt.Errorf("%s: %w", a, err)
		}
		if fi.IsDir() {
			if len(args) != 1 {
				return "", nil, fmt.Errorf("loading configuration: %s is a directory: give one directory or .cue files", a)
			}
			return p, nil, nil
		}
		if !strings.HasSuffix(p, ".cue") {
			return "", nil, fmt.Errorf("loading configuration: %s: not a .cue file", a)
		}
		d := filepath.Dir(p)
		if dir == "" {
			dir = d
		} else if d != dir {
			return "", nil, fmt.Errorf("loading configuration: %s and %s are in different directories: the files of one configuration share a directory", args[0], a)
		}
		files = append(files, p)
	}
	return dir, files, nil
}

// loadConfig is how configurations in dir are loaded: with the schema
// importable, and, without a module of its own, as a module of hephc's.
func loadConfig(dir string) *load.Config {
	cfg := &load.Config{Dir: dir, Overlay: overlay(dir)}
	if _, err := os.Stat(filepath.Join(dir, "cue.mod")); err != nil {
		cfg.ModuleRoot = dir
	}
	return cfg
}

// overlay makes the schema importable from dir with no files on disk: a
// module file (used only when dir has none) and the schema as a package
// under cue.mod/pkg (which always wins over what disk holds, so hephc
// evaluates against its own schema).
func overlay(dir string) map[string]load.Source {
	o := make(map[string]load.Source)
	o[filepath.Join(dir, "cue.mod", "module.cue")] = load.FromString(ModuleFile())
	if b, err := os.ReadFile(filepath.Join(dir, "cue.mod", "module.cue")); err == nil {
		o[filepath.Join(dir, "cue.mod", "module.cue")] = load.FromBytes(b)
	}
	pkgDir := filepath.Join(dir, "cue.mod", "pkg", filepath.FromSlash(defs.ImportPath))
	for name, b := range defs.Files() {
		o[filepath.Join(pkgDir, name)] = load.FromBytes(b)
	}
	return o
}

// ModuleFile is the cue.mod/module.cue hephc gives a directory without one.
func ModuleFile() string {
	return fmt.Sprintf("module: %q\nlanguage: version: %q\n", defs.ModulePath, defs.LanguageVersion)
}

// Definition returns one of the schema's definitions (e.g. #Policy), built
// in the loader's context so that it unifies with the values Load returns.
// dir is a directory the schema is made importable in (the
// configuration's).
func (l *Loader) Definition(dir, name string) (cue.Value, error) {
	if v, ok := l.defs[name]; ok {
		return v, nil
	}
	insts := load.Instances([]string{defs.ImportPath}, loadConfig(dir))
	if len(insts) != 1 {
		return cue.Value{}, fmt.Errorf("loading the schema %s: want one instance, found %d", defs.ImportPath, len(insts))
	}
	if err := insts[0].Err; err != nil {
		return cue.Value{}, fmt.Errorf("loading the schema %s: %v", defs.ImportPath, err)
	}
	v := l.ctx.BuildInstance(insts[0]).LookupPath(cue.ParsePath(name))
	if err := v.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("schema definition %s: %w", name, err)
	}
	if l.defs == nil {
		l.defs = make(map[string]cue.Value)
	}
	l.defs[name] = v
	return v, nil
}
