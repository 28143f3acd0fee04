package main

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/mod/module"

	"hephc.dev/hephc/gomod"
	"hephc.dev/hephc/pins"
)

func init() {
	register(&command{
		name:    "add",
		args:    "[--to FILE.cue] [--name NAME] PACKAGE[@VERSION] [FILE.cue…|DIR]",
		summary: "pin a Go command and exactly the modules it needs, as a #GoProgram ready to put in an image",
		flags: func(fs *pflag.FlagSet) {
			fs.String("to", "", "write the program into `FILE.cue` of the configuration (a new file is created); default: the file of the modules table, else the one that pins the toolchain")
			fs.String("name", "", "the program's name and field (default: the package's last path element)")
		},
		run: runAdd,
	})
}

// runAdd resolves PACKAGE@VERSION as go install would with the
// configuration's toolchain and writes a pinned #GoProgram for it,
// reusing the module pins the configuration has.
func runAdd(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("want a package, e.g. github.com/BurntSushi/toml/cmd/tomlv@latest")
	}
	pkg, query, _ := strings.Cut(args[0], "@")
	to, _ := fs.GetString("to")
	name, _ := fs.GetString("name")
	cfgArgs := args[1:]
	ctx := context.Background()
	c, err := pins.Load(e.cwd, cfgArgs)
	if err != nil {
		return err
	}
	if name == "" {
		name = commandName(pkg)
	}
	field := strings.ReplaceAll(strings.ReplaceAll(name, "-", "_"), ".", "_")
	if err := c.CheckNewField(field); err != nil {
		return fmt.Errorf("add: %w", err)
	}
	tool, err := toolchainPin(c)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	u, err := newUpdater(e, c)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	defer u.Close()
	r := u.R
	tc, err := r.Toolchain(ctx, tool.Module, u.Known(tool))
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	src, rel, err := r.FetchPackage(ctx, pkg, query)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	defer src.Close()
	res, err := r.Resolve(ctx, src, tc, []string{rel}, nil)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	// The tests a new program gets by default, go test ./...: the modules
	// only they read are pinned too. Tests that cannot be resolved (a
	// package that needs cgo, say) leave the program as it is, with a
	// note: its tests field then needs narrowing.
	testDeps, testErr := r.ResolveTests(ctx, src, tc, res, nil)
	file := defaultFile(c)
	if to != "" {
		file = absPath(e.cwd, to)
	}
	np := pins.NewProgram{
		Field:     field,
		Name:      name,
		File:      file,
		Src:       src.Module,
		Packages:  []string{rel},
		Toolchain: tool,
		Deps:      res.Deps,
		TestDeps:  testDeps,
		ModFiles:  res.ModFiles,
		Meta:      pins.Meta{Description: firstSentence(res.Packages[0].Doc), License: pins.DetectLicense(src.Dir)},
	}
	if err := c.AddProgram(np); err != nil {
		return fmt.Errorf("add: %w", err)
	}
	lock, err := pins.ReadLock(c.Dir)
	if err == nil {
		err = u.Complete(ctx, lock)
	}
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	out, _, err := c.Output(file)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	verifyArgs := cfgArgs
	if len(cfgArgs) > 0 && !slicesContainsFile(e, cfgArgs, file) {
		verifyArgs = append(append([]string(nil), cfgArgs...), file)
	}
	var changes []string
	if err := addLock(c, verifyArgs, out, &changes); err != nil {
		return fmt.Errorf("add: %w", err)
	}
	if err := writeFiles(out); err != nil {
		return err
	}
	for _, ch := range u.Changes {
		fmt.Fprintln(e.stdout, ch)
	}
	newPins := len(c.NewEntries())
	fmt.Fprintf(e.stdout, "%s: %s %s (%s), %s, %d new in %s\n", np.Field, src.Path, src.Version, path.Join(src.Path, rel), plural(len(res.Deps), "dep"), newPins, pins.TableField)
	if len(testDeps) > 0 {
		fmt.Fprintf(e.stdout, "%s.tests.go: %s only its tests read\n", np.Field, plural(len(testDeps), "module"))
	}
	if testErr != nil {
		fmt.Fprintf(e.stdout, "note: %s's tests (go test ./...) were not resolved: %v; narrow %s.tests.go.packages or turn them off with a reason\n", np.Field, testErr, np.Field)
	}
	if np.Meta.License == "" {
		fmt.Fprintf(e.stdout, "note: no license detected; set %s.meta.license (a policy may require one)\n", np.Field)
	}
	fmt.Fprintf(e.stderr, "updated %s; put it in an image with inputs: bin: %s: %s\n", filesList(e, out), np.Field, np.Field)
	return nil
}

// toolchainPin is the toolchain the configuration's programs are built
// with: its only golang.org/toolchain pin, or the one at attr toolchain.
func toolchainPin(c *pins.Config) (*pins.Module, error) {
	var all []*pins.Module
	for _, m := range c.Modules {
		if m.Path == gomod.ToolchainModule {
			if m.Attr == "toolchain" {
				return m, nil
			}
			all = append(all, m)
		}
	}
	switch len(all) {
	case 1:
		return all[0], nil
	case 0:
		return nil, fmt.Errorf("the configuration pins no toolchain: add one, e.g. toolchain: heph.#GoModule & {path: %q, version: %q, sum: \"h1:…\"} (hephc update %s@VERSION then keeps it)", gomod.ToolchainModule, gomod.ToolchainVersion("go1.26.8"), gomod.ToolchainModule)
	}
	return nil, fmt.Errorf("the configuration pins %d toolchains and none at toolchain: name the one to build with toolchain", len(all))
}

// commandName is the name go install gives a command: its last path
// element, the one before a major version suffix.
func commandName(pkg string) string {
	elems := strings.Split(pkg, "/")
	last := elems[len(elems)-1]
	if len(elems) > 1 {
		if _, major, ok := module.SplitPathVersion("x/" + last); ok && major != "" {
			last = elems[len(elems)-2]
		}
	}
	return last
}

// firstSentence is the first sentence of a doc comment, on one line.
func firstSentence(doc string) string {
	doc = strings.Join(strings.Fields(doc), " ")
	if i := strings.Index(doc, ". "); i >= 0 {
		doc = doc[:i+1]
	}
	return doc
}

func slicesContainsFile(e *env, args []string, file string) bool {
	for _, a := range args {
		if absPath(e.cwd, a) == file {
			return true
		}
	}
	return false
}
