package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/srcpos"
)

func init() {
	register(&command{
		name:    "init",
		args:    "[DIR]",
		summary: "write cue.mod with hephc's schema, so the standard cue tool sees what hephc sees",
		run:     runInit,
	})
}

func runInit(e *env, _ *pflag.FlagSet, args []string) error {
	if len(args) > 1 {
		return usagef("want at most one directory")
	}
	dir := e.cwd
	if len(args) == 1 {
		dir = absPath(e.cwd, args[0])
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("init: %s is not a directory", dir)
	}
	mod := filepath.Join(dir, "cue.mod", "module.cue")
	if _, err := os.Stat(mod); errors.Is(err, fs.ErrNotExist) {
		if err := writeFile(mod, []byte(lang.ModuleFile())); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %s\n", srcpos.RelPath(e.cwd, mod))
	} else if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	pkg := filepath.Join(dir, "cue.mod", "pkg", filepath.FromSlash(defs.ImportPath))
	files := defs.Files()
	// Remove schema files an older hephc wrote that this one no longer has.
	if entries, err := os.ReadDir(pkg); err == nil {
		for _, ent := range entries {
			if _, ok := files[ent.Name()]; !ok && strings.HasSuffix(ent.Name(), ".cue") {
				if err := os.Remove(filepath.Join(pkg, ent.Name())); err != nil {
					return fmt.Errorf("init: %w", err)
				}
			}
		}
	}
	for _, name := range defs.Names() {
		p := filepath.Join(pkg, name)
		if err := writeFile(p, files[name]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %s\n", srcpos.RelPath(e.cwd, p))
	}
	fmt.Fprint(e.stdout, vetHint)
	return nil
}

// vetHint is the exact cue command that accepts the files hephc accepts.
// A policy is made of constraints (`license!: _`, `!~"init="`), which
// are incomplete by design: plain `cue vet` asks every field to be
// concrete and refuses them, so the command says -c=false. It still
// refuses every conflict and type error; what it leaves open (a source
// without its pin, say) `hephc check` refuses.
const vetHint = `check with the standard cue tool: cue vet -c=false ./...
(a policy's constraints are incomplete by design; hephc check checks the rest)
`

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return nil
}
