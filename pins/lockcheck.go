package pins

import (
	"fmt"
	"path/filepath"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/gomod"
	"hephc.dev/hephc/store"
)

// CheckLock checks the Go pins of g, the graph of the configuration in
// dir, against its LockFile (nothing when it has none): a module version
// or sum that hephc update did not check (one changed by hand), a program
// whose source, toolchain or deps are not what was resolved. Each
// problem is an error at the field it is about, naming the hephc update
// command that fixes it. It reads nothing but the LockFile: no network.
func CheckLock(dir string, g *eval.Graph) error {
	lock, err := ReadLock(dir)
	if err != nil || lock == nil {
		return err
	}
	mods := make(map[store.DrvHash]gomod.Module)
	for h, n := range g.Nodes {
		if n.Drv.Builder == builtins.FetchGoMod {
			var m gomod.Module
			m.Path, _ = n.Drv.Attrs["module"].(string)
			m.Version, _ = n.Drv.Attrs["version"].(string)
			m.Sum = n.Drv.OutputHash
			mods[h] = m
		}
	}
	// fix is the command that pins module h right: for a program's dep,
	// resolving the program again; else moving the module itself.
	fix := func(h store.DrvHash) string {
		for _, n := range g.SortedNodes() {
			src, ok := mods[n.Drv.Inputs["src"]]
			if n.Drv.Builder != builtins.GoBuild || !ok || n.Drv.Inputs["src"] == h {
				continue
			}
			for name, in := range n.Drv.Inputs {
				if in == h && strings.HasPrefix(name, "deps.") {
					return "hephc update " + src.String()
				}
			}
		}
		return "hephc update " + mods[h].String()
	}
	var errs errors.Error
	bad := make(map[store.DrvHash]bool)
	for _, n := range g.SortedNodes() {
		m, ok := mods[n.Hash]
		if !ok {
			continue
		}
		want, locked := lock.Modules[m.String()]
		switch {
		case !locked:
			bad[n.Hash] = true
			errs = errors.Append(errs, lockError(n, "version", "%s %s is not a version hephc update resolved (version changed by hand?): run `%s`", m.Path, m.Version, fix(n.Hash)))
		case want != m.Sum:
			bad[n.Hash] = true
			errs = errors.Append(errs, lockError(n, "sum", "%s is not the sum of %s that hephc update checked (%s): run `%s`", m.Sum, m, want, fix(n.Hash)))
		}
	}
	for _, n := range g.SortedNodes() {
		src, ok := mods[n.Drv.Inputs["src"]]
		if n.Drv.Builder != builtins.GoBuild || !ok || bad[n.Drv.Inputs["src"]] {
			continue
		}
		run := "hephc update " + src.String()
		got := programLockOf(g, n, mods)
		if lock.Programs[got] {
			continue
		}
		resolved := false
		for pl := range lock.Programs {
			if pl.sameBuild(got) {
				resolved = true
			}
		}
		if resolved {
			errs = errors.Append(errs, lockError(n, "inputs.deps", "its deps are not the ones hephc update resolved for %s (changed by hand?): run `%s`", src, run))
		} else {
			errs = errors.Append(errs, lockError(n, "", "%s is not in %s: hephc update has not resolved %s for packages %s with %s (written by hand?): run `%s`", n.Attr, LockFile, src, got.Packages, got.GoVersion, run))
		}
	}
	if errs != nil {
		return errs
	}
	return nil
}

// programLockOf is what the LockFile should say of the program node n.
func programLockOf(g *eval.Graph, n *eval.Node, mods map[store.DrvHash]gomod.Module) ProgramLock {
	pkgs, _ := stringList(n.Drv.Attrs["packages"])
	pl := ProgramLock{Src: mods[n.Drv.Inputs["src"]].String(), GoVersion: "none", Packages: packagesKey(pkgs)}
	if tc, ok := mods[n.Drv.Inputs["go"]]; ok {
		if v, _, err := gomod.ToolchainGoVersion(tc.Version); err == nil {
			pl.GoVersion = v
		}
	}
	var deps []gomod.Module
	for i := 0; ; i++ {
		h, ok := n.Drv.Inputs[fmt.Sprintf("deps.%d", i)]
		if !ok {
			break
		}
		deps = append(deps, mods[h])
	}
	mf := ""
	if h, ok := n.Drv.Inputs["modfiles"]; ok {
		if m := g.Nodes[h]; m != nil {
			mf = m.Drv.OutputHash
		}
	}
	pl.Deps = DepsDigest(deps, mf)
	return pl
}

// lockError is an error about field of node n (the node itself for "").
func lockError(n *eval.Node, field, format string, args ...any) *eval.Error {
	attr := n.Attr
	v := n.Value()
	if field != "" {
		attr += "." + field
		v = v.LookupPath(cue.ParsePath(field))
	}
	return &eval.Error{Pos: fieldPos(v), Attr: attr, Text: fmt.Sprintf(format, args...)}
}

// fieldPos is where v is written in the user's files: its literal, else
// the first of its conjuncts outside the schema.
func fieldPos(v cue.Value) token.Pos {
	var found token.Pos
	var visit func(v cue.Value, depth int)
	visit = func(v cue.Value, depth int) {
		if found.IsValid() || depth > 6 || !v.Exists() {
			return
		}
		if src := v.Source(); src != nil {
			if f, ok := src.(*ast.Field); ok {
				src = f.Value
			}
			if p := src.Pos(); p.IsValid() && !defs.IsSchemaFile(p.Filename()) && filepath.IsAbs(p.Filename()) {
				found = p
				return
			}
		}
		if p := v.Pos(); p.IsValid() && !defs.IsSchemaFile(p.Filename()) && depth > 0 {
			found = p
			return
		}
		op, args := v.Expr()
		if op == cue.AndOp || op == cue.NoOp && len(args) == 1 {
			for _, a := range args {
				visit(a, depth+1)
			}
		}
	}
	visit(v, 0)
	if !found.IsValid() {
		found = v.Pos()
	}
	return found
}
