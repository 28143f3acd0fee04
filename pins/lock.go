package pins

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/zeebo/blake3"

	"hephc.dev/hephc/gomod"
)

// LockFile is the file, beside a configuration's .cue files, that records
// what hephc add and hephc update resolved: every Go module pin they
// checked (path, version, sum) and, for every program built from a Go
// module, the source, toolchain, packages and deps they resolved (by what
// is built, not by where it is written: one derivation may be reached
// by several paths). Evaluation checks
// the configuration's pins against it (CheckLock), so a pin changed by
// hand fails before anything is built. A configuration without one is not
// checked.
const LockFile = "heph.sum"

const lockHeader = `# heph.sum: the pins hephc add and hephc update resolved and checked;
# evaluation checks the configuration against them. Written by hephc: run
# hephc update rather than editing it.
`

// Lock is a parsed LockFile.
type Lock struct {
	Modules  map[string]string    // "path@version" → sum
	Programs map[ProgramLock]bool // the resolutions recorded
}

// ProgramLock is what was resolved for one program.
type ProgramLock struct {
	Src       string // path@version of its main module
	GoVersion string // of its toolchain, e.g. go1.26.8
	Packages  string // its packages, comma-separated
	Deps      string // DepsDigest of its deps and module graph pin
}

// sameBuild reports whether two resolutions are of the same packages of
// the same source with the same toolchain.
func (pl ProgramLock) sameBuild(o ProgramLock) bool {
	return pl.Src == o.Src && pl.GoVersion == o.GoVersion && pl.Packages == o.Packages
}

// packagesKey is how a LockFile writes a program's packages.
func packagesKey(packages []string) string {
	if len(packages) == 0 {
		return "."
	}
	return strings.Join(packages, ",")
}

// DepsDigest is the digest a LockFile records of a program's deps (each
// path@version and sum) and the hash of its module graph's go.mod files
// ("" without).
func DepsDigest(deps []gomod.Module, modFiles string) string {
	lines := make([]string, 0, len(deps)+1)
	for _, d := range deps {
		lines = append(lines, d.Path+" "+d.Version+" "+d.Sum+"\n")
	}
	slices.Sort(lines)
	lines = slices.Compact(lines)
	if modFiles != "" {
		lines = append(lines, "modfiles "+modFiles+"\n")
	}
	sum := blake3.Sum256([]byte(strings.Join(lines, "")))
	return "blake3:" + hex.EncodeToString(sum[:])
}

// ReadLock reads the LockFile of the configuration in dir; nil, nil when
// there is none.
func ReadLock(dir string) (*Lock, error) {
	name := filepath.Join(dir, LockFile)
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l := &Lock{Modules: make(map[string]string), Programs: make(map[ProgramLock]bool)}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && strings.HasPrefix(f[2], "h1:"):
			l.Modules[f[0]+"@"+f[1]] = f[2]
		case len(f) == 5 && f[1] == "program":
			l.Programs[ProgramLock{Src: f[0], GoVersion: f[2], Packages: f[3], Deps: f[4]}] = true
		default:
			return nil, fmt.Errorf("%s:%d: want PATH VERSION SUM or PATH@VERSION program GOVERSION PACKAGES DIGEST", name, n)
		}
	}
	return l, sc.Err()
}

// lockOf renders the LockFile of c: every Go module pin and every program
// built from a Go module, sorted.
func (c *Config) lockOf() []byte {
	var mods, progs []string
	for _, m := range c.Modules {
		mods = append(mods, m.Path+" "+m.Version+" "+m.Sum+"\n")
	}
	for _, p := range c.Programs {
		pl := c.programLock(p)
		progs = append(progs, fmt.Sprintf("%s program %s %s %s\n", pl.Src, pl.GoVersion, pl.Packages, pl.Deps))
	}
	slices.Sort(mods)
	slices.Sort(progs)
	return []byte(lockHeader + strings.Join(slices.Compact(mods), "") + strings.Join(slices.Compact(progs), ""))
}

// programLock is what the LockFile says of p when p is consistent.
func (c *Config) programLock(p *Program) ProgramLock {
	goVersion := "none"
	if p.Go != nil {
		if g, _, err := gomod.ToolchainGoVersion(p.Go.Version); err == nil {
			goVersion = g
		}
	}
	mf := ""
	if p.ModFiles != nil {
		mf = p.ModFiles.Hash
	}
	return ProgramLock{Src: p.Src.Module.String(), GoVersion: goVersion, Packages: packagesKey(p.Packages), Deps: DepsDigest(modulesOf(p.Deps), mf)}
}

// Covered reports which pins and programs of c lock records as they are:
// those need not be resolved again for the LockFile to cover c.
func (c *Config) Covered(lock *Lock) (mods map[*Module]bool, progs map[*Program]bool) {
	mods, progs = make(map[*Module]bool), make(map[*Program]bool)
	if lock == nil {
		return mods, progs
	}
	for _, m := range c.Modules {
		if lock.Modules[m.Module.String()] == m.Sum {
			mods[m] = true
		}
	}
	for _, p := range c.Programs {
		if lock.Programs[c.programLock(p)] && mods[p.Src] {
			progs[p] = true
		}
	}
	return mods, progs
}
