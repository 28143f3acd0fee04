package pins

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"hephc.dev/hephc/gomod"
)

// Updater plans pin changes for a configuration, resolving with a
// gomod.Resolver.
type Updater struct {
	C *Config
	R *gomod.Resolver
	// Known returns a directory that already holds the toolchain m (its
	// path in hephc's store), or "".
	Known func(m *Module) string

	Changes []Change

	moved      map[*Module]gomod.Module // pins given a new version
	written    map[*Module]bool         // moved pins whose literals are planned
	verified   map[gomod.Module]bool    // pins checked in this run
	sources    map[string]*gomod.Source
	toolchains map[string]*gomod.Toolchain
	resolved   map[*Program]bool
	locals     map[*LocalFile]localCopy
}

// Change is one line of what an update does.
type Change struct {
	Attr string
	Text string
}

func (ch Change) String() string { return ch.Attr + ": " + ch.Text }

// NewUpdater returns an updater for c resolving with r.
func NewUpdater(c *Config, r *gomod.Resolver) *Updater {
	return &Updater{
		C: c, R: r, Known: func(*Module) string { return "" },
		moved:      make(map[*Module]gomod.Module),
		written:    make(map[*Module]bool),
		verified:   make(map[gomod.Module]bool),
		sources:    make(map[string]*gomod.Source),
		toolchains: make(map[string]*gomod.Toolchain),
		resolved:   make(map[*Program]bool),
		locals:     make(map[*LocalFile]localCopy),
	}
}

// Close removes the fetched sources.
func (u *Updater) Close() {
	for _, s := range u.sources {
		s.Close()
	}
	for _, l := range u.locals {
		l.src.Close()
	}
}

// NotUsedError says that the configuration pins no module of a path.
type NotUsedError struct{ Path string }

func (e *NotUsedError) Error() string {
	return fmt.Sprintf("%s is not used by the configuration: no #GoModule pins it (hephc add PACKAGE@VERSION adds a program)", e.Path)
}

// Move plans moving the module path to the version query gives ("" moves
// within its major version): a program's source is resolved again with
// every program built from it, a toolchain pin moves with every program
// built with it resolved again, any other pin gets the new version's sum.
// A module only programs depend on is refused: its version is the one its
// program's main module selects.
func (u *Updater) Move(ctx context.Context, path, query string) error {
	pins := u.C.ModulesAt(path)
	if len(pins) == 0 {
		return &NotUsedError{Path: path}
	}
	var srcOf, goOf, depOf []*Program
	for _, p := range u.C.Programs {
		if p.Src.Path == path {
			srcOf = append(srcOf, p)
		}
		if p.Go != nil && p.Go.Path == path {
			goOf = append(goOf, p)
		}
		for _, d := range p.Deps {
			if d != nil && d.Path == path {
				depOf = append(depOf, p)
			}
		}
	}
	standalone := slices.DeleteFunc(slices.Clone(pins), func(m *Module) bool {
		return slices.ContainsFunc(depOf, func(p *Program) bool { return slices.Contains(p.Deps, m) })
	})
	if len(srcOf) == 0 && len(goOf) == 0 && len(standalone) == 0 {
		return fmt.Errorf("%s is a dependency of %s: %s's go.mod selects its version; update that module instead", path, depOf[0].Attr, depOf[0].Src.Path)
	}
	for _, m := range pins {
		if !slices.Contains(standalone, m) && !u.isSrc(m) {
			continue
		}
		v, err := u.target(ctx, m, query)
		if err != nil {
			return err
		}
		if v != m.Version {
			u.moved[m] = gomod.Module{Path: m.Path, Version: v}
		}
	}
	for _, p := range u.C.Programs {
		if p.Src.Path == path || p.Go != nil && p.Go.Path == path {
			if err := u.resolve(ctx, p); err != nil {
				return err
			}
		}
	}
	if err := u.pinMoved(ctx); err != nil {
		return err
	}
	return u.modFiles(ctx, path)
}

// All plans a bare update: every program's main module to its newest
// version within its major version, every program resolved again, every
// #LocalFile and #GoModFiles pin checked. Toolchains and other pins move
// only when named (Move).
func (u *Updater) All(ctx context.Context) error {
	for _, p := range u.C.Programs {
		if _, done := u.moved[p.Src]; done {
			continue
		}
		v, err := u.R.Upgrade(ctx, p.Src.Path, p.Src.Version)
		if err != nil {
			return err
		}
		if v != p.Src.Version {
			u.moved[p.Src] = gomod.Module{Path: p.Src.Path, Version: v}
		}
	}
	for _, p := range u.C.Programs {
		if err := u.resolve(ctx, p); err != nil {
			return err
		}
	}
	if err := u.pinMoved(ctx); err != nil {
		return err
	}
	if err := u.modFiles(ctx, ""); err != nil {
		return err
	}
	return u.Local(ctx)
}

func (u *Updater) isSrc(m *Module) bool {
	for _, p := range u.C.Programs {
		if p.Src == m {
			return true
		}
	}
	return false
}

// target is the version m moves to for query.
func (u *Updater) target(ctx context.Context, m *Module, query string) (string, error) {
	if query == "" {
		return u.R.Upgrade(ctx, m.Path, m.Version)
	}
	return u.R.Version(ctx, m.Path, query)
}

// version is what m's version is once the plan is carried out.
func (u *Updater) version(m *Module) string {
	if n, ok := u.moved[m]; ok {
		return n.Version
	}
	return m.Version
}

// source fetches (once) the main module m at its planned version; its sum
// must be the pinned one when the version stays.
func (u *Updater) source(ctx context.Context, m *Module) (*gomod.Source, error) {
	v := u.version(m)
	key := m.Path + "@" + v
	if s, ok := u.sources[key]; ok {
		return s, nil
	}
	s, err := u.R.FetchSource(ctx, m.Path, v, "")
	if err != nil {
		return nil, err
	}
	u.verified[s.Module] = true
	if v == m.Version && s.Sum != m.Sum && !u.R.Checks(m.Path) {
		// Without a checksum database to say which is right, the pin wins.
		s.Close()
		return nil, fmt.Errorf("%s@%s: hash mismatch: pinned %s, the module proxy served %s (no checksum database checks it: GOSUMDB=off or GONOSUMDB)", m.Path, v, m.Sum, s.Sum)
	}
	u.sources[key] = s
	return s, nil
}

// toolchain gets (once) the toolchain pin m at its planned version.
func (u *Updater) toolchain(ctx context.Context, m *Module) (*gomod.Toolchain, error) {
	v := u.version(m)
	if tc, ok := u.toolchains[v]; ok {
		return tc, nil
	}
	pin := m.Module
	known := u.Known(m)
	if v != m.Version {
		// The checksum database's sum, without fetching the 240 MB zip
		// twice: Toolchain checks what it fetches against it.
		var err error
		if pin, err = u.R.CheckPin(ctx, gomod.Module{Path: m.Path, Version: v}); err != nil {
			return nil, err
		}
		u.moved[m] = pin
		u.verified[pin] = true
		known = ""
	}
	tc, err := u.R.Toolchain(ctx, pin, known)
	if err != nil {
		return nil, err
	}
	u.toolchains[v] = tc
	return tc, nil
}

// resolve resolves program p at its planned source version and plans its
// source pin, deps and module graph pin.
func (u *Updater) resolve(ctx context.Context, p *Program) error {
	if u.resolved[p] {
		return nil
	}
	u.resolved[p] = true
	if p.Go == nil || p.Go.Path != gomod.ToolchainModule {
		return fmt.Errorf("%s: its input go is not a pinned %s module", p.Attr, gomod.ToolchainModule)
	}
	tc, err := u.toolchain(ctx, p.Go)
	if err != nil {
		return err
	}
	src, err := u.source(ctx, p.Src)
	if err != nil {
		return err
	}
	var libs []string
	for _, b := range u.C.Busyboxes {
		if b.Shares == p {
			more, err := BusyboxPackages(src.Dir, src.Path, b.Commands)
			if err != nil {
				return fmt.Errorf("%s: %w", b.Attr, err)
			}
			libs = append(libs, more...)
		}
	}
	slices.Sort(libs)
	res, err := u.R.Resolve(ctx, src, tc, p.Packages, slices.Compact(libs))
	if err != nil {
		return err
	}
	if src.Module != p.Src.Module {
		u.moved[p.Src] = src.Module
	}
	return u.planResolution(ctx, p, src, tc, res, describe(p.Src.Module, src.Module, modulesOf(p.Deps), res.Deps))
}

// planResolution plans what resolving p found: its deps, its tests' deps
// and its module graph pin; text says how its source and deps change.
func (u *Updater) planResolution(ctx context.Context, p *Program, src *gomod.Source, tc *gomod.Toolchain, res *gomod.Resolution, text string) error {
	if err := u.C.SetDeps(p, res.Deps); err != nil {
		return err
	}
	for _, d := range res.Deps {
		u.verified[d] = true // by the main module's go.sum
	}
	if text != "" {
		u.Changes = append(u.Changes, Change{p.Attr, text})
	}
	if err := u.resolveTests(ctx, p, src, tc, res); err != nil {
		return err
	}
	var err error
	switch {
	case p.ModFiles != nil:
		mf := res.ModFiles
		if mf == nil {
			if mf, err = u.R.GoModFiles(ctx, src); err != nil {
				return err
			}
		}
		return u.setModFiles(p.ModFiles, mf.Hash)
	case res.ModFiles != nil:
		return fmt.Errorf("%s: %s needs the go.mod files of its module graph to build offline: give it an input modfiles, a #GoModFiles of its source (hash %s)", p.Attr, src.Module, res.ModFiles.Hash)
	}
	return nil
}

// resolveTests resolves the modules only p's tests read and plans its
// tests.go.deps.
func (u *Updater) resolveTests(ctx context.Context, p *Program, src *gomod.Source, tc *gomod.Toolchain, res *gomod.Resolution) error {
	if p.Tests == nil || p.Tests.Off {
		return nil
	}
	deps, err := u.R.ResolveTests(ctx, src, tc, res, p.Tests.Packages)
	if err != nil {
		return fmt.Errorf("%s.tests.go: %w", p.Attr, err)
	}
	if err := u.C.SetTestDeps(p, deps); err != nil {
		return err
	}
	for _, d := range deps {
		u.verified[d] = true // by the main module's go.sum
	}
	if text := describeDeps(modulesOf(p.Tests.Deps), deps); text != "" {
		u.Changes = append(u.Changes, Change{p.Attr + ".tests.go", "deps: " + text})
	}
	return nil
}

func (u *Updater) setModFiles(mf *ModFiles, hash string) error {
	if mf.Hash == hash {
		return nil
	}
	for _, ch := range u.Changes {
		if ch.Attr == mf.Attr {
			return nil // planned already, through another program
		}
	}
	if err := u.C.SetHash(mf.Attr, mf.HashLit, hash); err != nil {
		return err
	}
	u.Changes = append(u.Changes, Change{mf.Attr, "go.mod files " + mf.Hash + " → " + hash})
	return nil
}

// pinMoved writes the new versions and sums of the moved pins.
func (u *Updater) pinMoved(ctx context.Context) error {
	for _, m := range u.C.Modules {
		n, ok := u.moved[m]
		if !ok || u.written[m] {
			continue
		}
		u.written[m] = true
		if n.Sum == "" {
			pin, err := u.R.Pin(ctx, m.Path, n.Version)
			if err != nil {
				return err
			}
			n = pin
			u.moved[m] = n
			u.verified[n] = true
			u.Changes = append(u.Changes, Change{m.Attr, m.Path + " " + m.Version + " → " + n.Version})
		} else if !u.isSrc(m) {
			u.Changes = append(u.Changes, Change{m.Attr, m.Path + " " + m.Version + " → " + n.Version})
		}
		if err := u.C.SetModule(m, n.Version, n.Sum); err != nil {
			return err
		}
	}
	return nil
}

// Complete makes the plan cover what lock (the configuration's LockFile,
// nil for none) does not: every program it does not record as it is is
// resolved, every other pin it does not record is checked against the
// checksum database (a wrong sum corrected, as with a version changed by
// hand). Then a LockFile written from the result covers the whole
// configuration with what was checked.
func (u *Updater) Complete(ctx context.Context, lock *Lock) error {
	mods, progs := u.C.Covered(lock)
	for _, p := range u.C.Programs {
		if !progs[p] {
			if err := u.resolve(ctx, p); err != nil {
				return err
			}
		}
	}
	if err := u.resolveLocals(ctx); err != nil {
		return err
	}
	if err := u.pinMoved(ctx); err != nil {
		return err
	}
	for _, m := range u.C.Modules {
		final := m.Module
		if n, ok := u.moved[m]; ok {
			final = n
		}
		if mods[m] && final == m.Module || u.verified[final] || u.usedOnlyByResolved(m) {
			continue
		}
		pin, err := u.R.CheckPin(ctx, final)
		if err != nil {
			return err
		}
		u.verified[pin] = true
		if pin.Sum != final.Sum {
			u.moved[m], u.written[m] = pin, true
			if err := u.C.SetModule(m, pin.Version, pin.Sum); err != nil {
				return err
			}
			u.Changes = append(u.Changes, Change{m.Attr, m.Path + " " + m.Version + " sum " + m.Sum + " → " + pin.Sum + " (the checksum database's)"})
		}
	}
	return nil
}

// usedOnlyByResolved reports whether m is a dep of programs only, all of
// them resolved in this run: a dep they no longer use is dropped, one they
// use is checked against their main module's go.sum.
func (u *Updater) usedOnlyByResolved(m *Module) bool {
	used := false
	for _, p := range u.C.allPrograms() {
		if slices.Contains(p.Deps, m) || p.Tests != nil && slices.Contains(p.Tests.Deps, m) {
			if !u.resolved[p] {
				return false
			}
			used = true
		}
	}
	return used && !u.C.consumersOutsideDeps(m) && !u.C.sourceOf(m)
}

// modFiles checks the #GoModFiles pins no program resolved (of the
// module path only, unless it is "").
func (u *Updater) modFiles(ctx context.Context, path string) error {
	for _, mf := range u.C.ModFiles {
		if mf.Src == nil || path != "" && mf.Src.Path != path || slices.ContainsFunc(u.C.Programs, func(p *Program) bool { return p.ModFiles == mf && u.resolved[p] }) {
			continue
		}
		src, err := u.source(ctx, mf.Src)
		if err != nil {
			return err
		}
		got, err := u.R.GoModFiles(ctx, src)
		if err != nil {
			return err
		}
		if err := u.setModFiles(mf, got.Hash); err != nil {
			return err
		}
	}
	return nil
}

// describe says how a program's source and deps change:
// "filippo.io/age v1.3.2 → v1.3.0; deps: golang.org/x/crypto v0.55.0 →
// v0.45.0, …"; "" when nothing does.
func describe(oldSrc, newSrc gomod.Module, oldDeps, newDeps []gomod.Module) string {
	var parts []string
	switch {
	case oldSrc.Version != newSrc.Version:
		parts = append(parts, oldSrc.Path+" "+oldSrc.Version+" → "+newSrc.Version)
	case oldSrc.Sum != newSrc.Sum:
		parts = append(parts, oldSrc.Path+" "+oldSrc.Version+" sum "+oldSrc.Sum+" → "+newSrc.Sum+" (the checksum database's)")
	}
	if deps := describeDeps(oldDeps, newDeps); deps != "" {
		parts = append(parts, "deps: "+deps)
	}
	return strings.Join(parts, "; ")
}

// describeDeps says how a list of modules changes: "golang.org/x/crypto
// v0.55.0 → v0.45.0, +c2sp.org/CCTV/age v0.0.0-…"; "" when it does not.
func describeDeps(oldDeps, newDeps []gomod.Module) string {
	versions := func(ds []gomod.Module) map[string][]string {
		m := make(map[string][]string)
		for _, d := range ds {
			m[d.Path] = append(m[d.Path], d.Version)
		}
		return m
	}
	ov, nv := versions(oldDeps), versions(newDeps)
	var paths []string
	for p := range ov {
		paths = append(paths, p)
	}
	for p := range nv {
		if _, ok := ov[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var deps []string
	for _, p := range paths {
		o, n := strings.Join(ov[p], " "), strings.Join(nv[p], " ")
		switch {
		case o == n:
		case o == "":
			deps = append(deps, "+"+p+" "+n)
		case n == "":
			deps = append(deps, "-"+p+" "+o)
		default:
			deps = append(deps, p+" "+o+" → "+n)
		}
	}
	return strings.Join(deps, ", ")
}
