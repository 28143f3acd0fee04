package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/cuepatch"
	"hephc.dev/hephc/gomod"
	"hephc.dev/hephc/pins"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "update",
		args:    "[--check] [--local | MODULE[@VERSION]…] [FILE.cue…|DIR]",
		summary: "move pinned Go modules to new versions and re-resolve the programs built from them (and their tests); refresh local files' pins",
		flags: func(fs *pflag.FlagSet) {
			fs.Bool("check", false, "change nothing: say what update would change, and exit 1 if anything is stale")
			fs.Bool("local", false, "move no module: refresh the pins of local files (#LocalFile) whose content changed and re-resolve the programs built from local modules")
		},
		run: runUpdate,
	})
}

// runUpdate moves the named modules (each to VERSION, or within its major
// version), or with none every program's main module within its major
// version, re-resolving the programs built from what moved and
// refreshing #LocalFile pins (with --local only those, and the programs
// built from local modules), then splices the changed literals into the
// configuration's files. Programs built from local modules are resolved
// again in every run.
func runUpdate(e *env, fs *pflag.FlagSet, args []string) error {
	check, _ := fs.GetBool("check")
	local, _ := fs.GetBool("local")
	mods, cfgArgs := splitArgs(args)
	if local && len(mods) > 0 {
		return usagef("--local moves no module: drop %s", strings.Join(mods, " "))
	}
	ctx := context.Background()
	c, err := pins.Load(e.cwd, cfgArgs)
	if err != nil {
		return err
	}
	lock, err := pins.ReadLock(c.Dir)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	u, err := newUpdater(e, c)
	if err != nil {
		return err
	}
	defer u.Close()
	switch {
	case local:
		err = u.Local(ctx)
	case len(mods) == 0:
		err = u.All(ctx)
	}
	for _, m := range mods {
		path, query, _ := strings.Cut(m, "@")
		if err = u.Move(ctx, path, query); err != nil {
			break
		}
	}
	if err == nil {
		err = u.Complete(ctx, lock)
	}
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	out, removed, err := c.Output(defaultFile(c))
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	changes := describeChanges(u.Changes, removed, c)
	if err := addLock(c, cfgArgs, out, &changes); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if check {
		if len(out) == 0 {
			fmt.Fprintln(e.stdout, "all pins are current")
			return nil
		}
		for _, ch := range changes {
			fmt.Fprintf(e.stdout, "stale: %s\n", ch)
		}
		return fmt.Errorf("update --check: the pins are stale (%s); hephc update would change %s", plural(len(changes), "change"), filesList(e, out))
	}
	if len(out) == 0 {
		fmt.Fprintln(e.stdout, "all pins are current")
		return nil
	}
	if err := writeFiles(out); err != nil {
		return err
	}
	for _, ch := range changes {
		fmt.Fprintln(e.stdout, ch)
	}
	fmt.Fprintf(e.stderr, "updated %s\n", filesList(e, out))
	return nil
}

// addLock checks the planned files out (the configuration evaluated again
// with them) and adds the LockFile that records the result to them when
// it changes, saying so in changes.
func addLock(c *pins.Config, cfgArgs []string, out map[string][]byte, changes *[]string) error {
	lock, err := c.Verify(cfgArgs, out)
	if err != nil {
		return err
	}
	name := filepath.Join(c.Dir, pins.LockFile)
	old, err := os.ReadFile(name)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if !bytes.Equal(old, lock) {
		out[name] = lock
		what := "records the pins hephc update checked"
		if old == nil {
			what = "new: " + what
		}
		*changes = append(*changes, pins.LockFile+": "+what)
	}
	return nil
}

// splitArgs separates modules from the configuration's files and
// directory: those end in .cue, or start with ".", "/", or are "."/"..".
func splitArgs(args []string) (mods, cfg []string) {
	for _, a := range args {
		if strings.HasSuffix(a, ".cue") || a == "." || a == ".." || strings.HasPrefix(a, "./") || strings.HasPrefix(a, "../") || filepath.IsAbs(a) {
			cfg = append(cfg, a)
		} else {
			mods = append(mods, a)
		}
	}
	return mods, cfg
}

// newUpdater returns an updater for c resolving with the user's module
// proxy and checksum database, keeping its caches in hephc's cache
// directory and taking the toolchain from the store when it is there.
func newUpdater(e *env, c *pins.Config) (*pins.Updater, error) {
	r, err := gomod.NewResolver(gomod.EnvFrom(e.getenv), filepath.Join(pipeline.CacheDir(e.getenv), "gomod"), e.stderr)
	if err != nil {
		return nil, err
	}
	u := pins.NewUpdater(c, r)
	u.Known = func(m *pins.Module) string { return storedPath(e, c, m) }
	return u, nil
}

// storedPath is the physical path of pin m in the store when it is valid
// there; the store is not created when it does not exist.
func storedPath(e *env, c *pins.Config, m *pins.Module) string {
	n, ok := c.Graph.Nodes[m.Hash]
	if !ok {
		return ""
	}
	dir, err := storeDir(e)
	if err != nil {
		return ""
	}
	phys := filepath.Join(dir, "store", n.Path().Base())
	if _, err := os.Stat(phys); err != nil {
		return ""
	}
	st, err := store.Open(dir)
	if err != nil {
		return ""
	}
	defer st.Close()
	valid, err := st.ValidPaths(context.Background(), []store.Path{n.Path()})
	if err != nil || !valid[n.Path()] {
		return ""
	}
	return phys
}

// defaultFile is where new programs and pins go: the file of the modules
// table, else that of the toolchain pin, else the configuration's first
// file.
func defaultFile(c *pins.Config) string {
	if f := c.TableFile(); f != "" {
		return f
	}
	for _, m := range c.Modules {
		if m.Path == gomod.ToolchainModule && m.VersionLit != nil {
			return m.VersionLit.File
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range c.Files {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) > 0 {
		return names[0]
	}
	return filepath.Join(c.Dir, "system.cue")
}

// describeChanges lists the changes, then the modules table's entries
// removed and added.
func describeChanges(chs []pins.Change, removed []string, c *pins.Config) []string {
	var out []string
	for _, ch := range chs {
		out = append(out, ch.String())
	}
	out = append(out, c.Corrections()...)
	added := c.NewEntries()
	var tbl []string
	// A key removed and added again holds a new version: the program's
	// line says which.
	for _, k := range removed {
		if !slices.Contains(added, k) {
			tbl = append(tbl, "-"+k)
		}
	}
	for _, k := range added {
		if !slices.Contains(removed, k) {
			tbl = append(tbl, "+"+k)
		}
	}
	if len(tbl) > 0 {
		out = append(out, pins.TableField+": "+strings.Join(tbl, ", "))
	}
	return out
}

// writeFiles writes each file atomically, in order.
func writeFiles(out map[string][]byte) error {
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range out {
			if !yield(n) {
				return
			}
		}
	}) {
		if err := cuepatch.WriteFile(name, out[name]); err != nil {
			return err
		}
	}
	return nil
}

// filesList names the files of out, relative to the working directory.
func filesList(e *env, out map[string][]byte) string {
	var names []string
	for n := range out {
		rel, err := filepath.Rel(e.cwd, n)
		if err != nil || strings.HasPrefix(rel, "..") {
			rel = n
		}
		names = append(names, rel)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
