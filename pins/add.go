package pins

import (
	"fmt"
	"slices"
	"strings"

	"cuelang.org/go/cue"

	"hephc.dev/hephc/cuepatch"
	"hephc.dev/hephc/gomod"
)

// NewProgram is a #GoProgram for AddProgram to write.
type NewProgram struct {
	Field     string // its top-level field
	Name      string // the program's name
	File      string // where to write it (absolute); may be a new file
	Src       gomod.Module
	Packages  []string // relative to the module root
	Toolchain *Module
	Deps      []gomod.Module
	// TestDeps are the modules only its tests (go test ./...) read: when
	// there are any, it is written with tests: go: {packages: ["./..."],
	// deps: [...]}.
	TestDeps []gomod.Module
	ModFiles *gomod.ModFiles
	Meta     Meta
}

// Meta is what AddProgram writes into meta.
type Meta struct{ Description, License, Homepage string }

// inputNames are the fields of a program's inputs a reference from them
// must not start with.
var inputNames = []string{"src", "go", "deps", "modfiles"}

// capturedByInputs reports whether a reference written in a program's
// inputs would name one of them instead (inputs: {deps: [src.x]} means
// inputs.src).
func capturedByInputs(ref string) bool {
	first, _, _ := strings.Cut(ref, ".")
	first, _, _ = strings.Cut(first, "[")
	return slices.Contains(inputNames, first)
}

// AddProgram writes a pinned #GoProgram at the end of np.File, its deps
// referring to the modules already pinned and to new entries of the
// modules table.
func (c *Config) AddProgram(np NewProgram) error {
	if err := c.CheckNewField(np.Field); err != nil {
		return err
	}
	f, err := c.fileForWriting(np.File)
	if err != nil {
		return err
	}
	heph, err := c.importName(f)
	if err != nil {
		return err
	}
	goRef, err := c.inputRef(np.Toolchain)
	if err != nil {
		return err
	}
	// A source or module graph the configuration pins already is referred
	// to: the same derivation written twice would have to agree in meta.
	var in inputRefs
	in.goRef = goRef
	src, err := c.pinOf(np.Src)
	if err != nil {
		return err
	}
	if src != nil {
		if in.src, err = c.inputRef(src); err != nil {
			return err
		}
		for _, mf := range c.ModFiles {
			if np.ModFiles != nil && mf.Src == src && mf.Hash == np.ModFiles.Hash {
				if in.modfiles, err = c.attrRef(mf.Attr); err != nil {
					return err
				}
			}
		}
	}
	refs, err := c.newRefs(np.Deps)
	if err != nil {
		return err
	}
	testRefs, err := c.newRefs(np.TestDeps)
	if err != nil {
		return err
	}
	e := c.plan()
	e.renders = append(e.renders, func() error { return c.writeProgram(f, heph, in, np, refs, testRefs) })
	x := e.expect()
	var mf *ModFiles
	if np.ModFiles != nil {
		mf = &ModFiles{Hash: np.ModFiles.Hash}
		if in.modfiles == "" {
			x.programs[np.Field+"ModFiles"] = "modfiles " + np.ModFiles.Hash
		}
	}
	x.programs[np.Field] = programSummary(np.Src, np.Deps, mf)
	if len(np.TestDeps) > 0 {
		x.programs[np.Field+".tests.go.deps"] = testsSummary(np.TestDeps)
	}
	return nil
}

// newRefs are the references a new top-level program's inputs (or
// tests) name the pins of deps by.
func (c *Config) newRefs(deps []gomod.Module) ([]ref, error) {
	var refs []ref
	for _, d := range deps {
		r, m, err := c.refFor("", d)
		if err != nil {
			return nil, err
		}
		if capturedByInputs(r.text) {
			return nil, fmt.Errorf("%s: a program's inputs cannot refer to it (inputs.%s would mean itself): pin it in %s", m.Attr, r.text, TableField)
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// inputRefs are the references a new program's inputs are written with;
// "" for src and modfiles means written in the program.
type inputRefs struct{ src, goRef, modfiles string }

// inputRef is a reference to pin m from a top-level program's inputs.
func (c *Config) inputRef(m *Module) (string, error) {
	r, err := c.refTo("", m)
	if err != nil {
		return "", err
	}
	if capturedByInputs(r) {
		return "", fmt.Errorf("%s is pinned at %s, which a program's inputs cannot refer to (inputs.%s would mean itself): rename it", m.Path, m.Attr, r)
	}
	return r, nil
}

// attrRef is a reference to the derivation at attr from a top-level
// program's inputs.
func (c *Config) attrRef(attr string) (string, error) {
	return c.inputRef(&Module{Attr: attr})
}

// writeProgram writes the block of a new program at the end of f.
func (c *Config) writeProgram(f *cuepatch.File, heph string, in inputRefs, np NewProgram, refs, testRefs []ref) error {
	deps := c.plan().renderList(refs)

	var b strings.Builder
	src := f.Source()
	if len(src) > 0 && !strings.HasSuffix(string(src), "\n") {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n// %s, added by hephc add.\n", strings.Join(packagePaths(np.Src.Path, np.Packages), ", "))
	fmt.Fprintf(&b, "%s: %s.#GoProgram & {\n", np.Field, heph)
	fmt.Fprintf(&b, "\tname:    %q\n", np.Name)
	b.WriteString("\tversion: inputs.src.version\n")
	if len(np.Packages) > 0 && !(len(np.Packages) == 1 && np.Packages[0] == ".") {
		q := make([]string, len(np.Packages))
		for i, p := range np.Packages {
			q[i] = fmt.Sprintf("%q", p)
		}
		fmt.Fprintf(&b, "\tpackages: [%s]\n", strings.Join(q, ", "))
	}
	b.WriteString("\tinputs: {\n")
	if in.src != "" {
		fmt.Fprintf(&b, "\t\tsrc: %s\n", in.src)
	} else {
		fmt.Fprintf(&b, "\t\tsrc: %s.#GoModule & {\n\t\t\tpath:    %q\n\t\t\tversion: %q\n\t\t\tsum:     %q\n\t\t}\n", heph, np.Src.Path, np.Src.Version, np.Src.Sum)
	}
	fmt.Fprintf(&b, "\t\tgo: %s\n", in.goRef)
	switch {
	case in.modfiles != "":
		fmt.Fprintf(&b, "\t\tmodfiles: %s\n", in.modfiles)
	case np.ModFiles != nil:
		fmt.Fprintf(&b, "\t\tmodfiles: %sModFiles\n", np.Field)
	}
	b.WriteString("\t\tdeps: " + fillList("\t\t", deps) + "\n")
	b.WriteString("\t}\n")
	var meta []string
	for _, kv := range [][2]string{{"description", np.Meta.Description}, {"license", np.Meta.License}, {"homepage", np.Meta.Homepage}} {
		if kv[1] != "" {
			meta = append(meta, fmt.Sprintf("%s: %q", kv[0], kv[1]))
		}
	}
	if len(meta) > 0 {
		fmt.Fprintf(&b, "\tmeta: {%s}\n", strings.Join(meta, ", "))
	}
	if len(testRefs) > 0 {
		b.WriteString("\t// go test ./..., with the modules only the tests read.\n")
		b.WriteString("\ttests: go: {\n\t\tpackages: [\"./...\"]\n")
		b.WriteString("\t\tdeps: " + fillList("\t\t", c.plan().renderList(testRefs)) + "\n\t}\n")
	}
	b.WriteString("}\n")
	if np.ModFiles != nil && in.modfiles == "" {
		fmt.Fprintf(&b, "\n// The go.mod files of %s's module graph, which its build loads.\n", np.Src.Path)
		fmt.Fprintf(&b, "%sModFiles: %s.#GoModFiles & {\n\tname:   %q\n\thash:   %q\n\tinputs: src: %s.inputs.src\n}\n",
			np.Field, heph, np.Name+"-gomod-graph", np.ModFiles.Hash, np.Field)
	}
	return f.Insert(len(src), b.String())
}

// CheckNewField checks that a new top-level field may be called name.
func (c *Config) CheckNewField(name string) error {
	if !identRE.MatchString(name) || cueKeywords[name] {
		return fmt.Errorf("%q cannot name a field: choose a name with --name", name)
	}
	if name == TableField {
		return fmt.Errorf("%s names the modules table: choose another name with --name", name)
	}
	for _, suffix := range []string{"", "ModFiles"} {
		if v := c.Value.LookupPath(cue.MakePath(cue.Str(name + suffix))); v.Exists() {
			return fmt.Errorf("%s is already defined (at %s): choose another name with --name", name+suffix, c.posOfValue(v))
		}
	}
	return nil
}

// packagePaths are the import paths of packages of module mod.
func packagePaths(mod string, packages []string) []string {
	if len(packages) == 0 {
		return []string{mod}
	}
	var out []string
	for _, p := range packages {
		if p == "." {
			out = append(out, mod)
		} else if rel, ok := strings.CutPrefix(p, "./"); ok {
			out = append(out, mod+"/"+rel)
		} else {
			out = append(out, p)
		}
	}
	return out
}

// posOfValue is where v is written, file:line:col, or its path.
func (c *Config) posOfValue(v cue.Value) string {
	if p := v.Pos(); p.IsValid() {
		return c.rel(posOf(p))
	}
	return v.Path().String()
}
