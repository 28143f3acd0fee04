package depcheck

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const (
	hephc = "hephc.dev/hephc/"
	cue   = "cuelang.org/go"
)

// leaves import nothing of hephc.
var leaves = []string{"defs", "builtins", "srcpos", "fstree", "refscan"}

// rules say which imports a package of hephc may never have, directly or
// not (docs/design.md, "The packages"), besides what every rule says:
// nothing below the CLI imports it, and a leaf imports nothing of hephc.
var rules = []struct {
	pkg       string
	forbidden []string // import path prefixes, relative to hephc unless they hold a dot
}{
	// The store records and installs; it never evaluates, builds,
	// records generations or diffs them, nor judges signatures: an
	// InstallRequest's Check does.
	{"store", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "realize", "sandbox", "builder", "profile", "gendiff", "trust", "archive", "registry"}},
	// realize is handed a store.Graph: it never evaluates or judges one,
	// and it attests and admits through interfaces (Attester, Admission)
	// that the CLI implements with trust.
	{"realize", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "profile", "gendiff", "trust", "archive", "registry"}},
	// The archive carries paths and attestations between stores: it
	// admits through trust and installs through the store, and never
	// evaluates, builds or realizes.
	{"archive", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "realize", "sandbox", "builder", "profile", "gendiff", "registry"}},
	// The binary cache and package images move archive artifacts
	// through registries: they admit through trust and install through
	// the store, and never evaluate or build.
	{"registry", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "realize", "sandbox", "builder", "profile", "gendiff"}},
	{"pkgimage", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "realize", "sandbox", "builder", "profile", "gendiff", "registry"}},
	// Local sources are copied beneath a directory: nothing of hephc.
	{"localsrc", []string{hephc, cue}},
	{"sandbox", []string{cue, "store", "realize", "eval", "policy"}},
	{"profile", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "realize", "sandbox", "builder", "gendiff"}},
	{"gendiff", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "realize", "sandbox", "builder", "profile"}},
	{"lang", []string{"eval", "store", "policy"}},
	{"eval", []string{"lang", "policy"}},
	// policy reads configurations and graphs; it never builds.
	{"policy", []string{"builder", "realize", "sandbox"}},
	// Evaluating builds nothing.
	{"pipeline", []string{"sandbox", "builder", "realize"}},
	// hephc add and update: resolving Go modules knows nothing of
	// configurations or the store; pinning never builds; splicing
	// literals into .cue files needs only CUE's syntax; the Go module
	// formats the fetchers and the resolver share are a leaf.
	{"gomod", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "store", "realize", "sandbox", "builder", "pins", "cuepatch"}},
	{"pins", []string{"sandbox", "builder", "realize", "profile", "gendiff", "policy"}},
	{"cuepatch", []string{hephc}},
	{"modfetch", []string{hephc, cue}},
	// The package server's channels are TUF documents: nothing of hephc.
	// The server judges with trust and reads artifacts as the archive
	// writes them; it never evaluates, builds or realizes.
	{"channel", []string{hephc, cue}},
	{"server", []string{cue, "eval", "lang", "defs", "policy", "pipeline", "realize", "sandbox", "builder", "profile", "gendiff"}},
}

// only says which packages of hephc a package may import, directly or
// not: all others are forbidden (and CUE).
var only = []struct {
	pkg     string
	allowed []string
}{
	// Keys, statements and the quorum are judged without CUE or a
	// store: policy compiles into trust.Policy, callers hand subjects.
	{"trust", []string{"srcpos"}},
}

// deps returns every package of the module and, for each, every package
// it imports, directly or not.
func deps(t *testing.T) map[string][]string {
	out, err := exec.Command("go", "list", "-deps=false", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "hephc.dev/hephc/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[f[0]] = f[1:]
	}
	if len(m) < 10 {
		t.Fatalf("go list found %d packages; want the module's", len(m))
	}
	return m
}

func TestImportDirections(t *testing.T) {
	all := deps(t)
	check := func(pkg string, forbidden []string, why string) {
		ds, ok := all[hephc+pkg]
		if !ok {
			t.Errorf("%s: no such package", hephc+pkg)
			return
		}
		for _, d := range ds {
			for _, f := range forbidden {
				if !strings.Contains(f, ".") {
					f = hephc + f
				}
				if d == f || strings.HasPrefix(d, f+"/") || f == hephc && strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s (directly or not); %s", hephc+pkg, d, why)
				}
			}
		}
	}
	for _, r := range rules {
		check(r.pkg, r.forbidden, "docs/design.md forbids it")
	}
	for _, o := range only {
		for _, d := range all[hephc+o.pkg] {
			rel, ok := strings.CutPrefix(d, hephc)
			if strings.HasPrefix(d, cue) || ok && !slices.Contains(o.allowed, rel) {
				t.Errorf("%s imports %s (directly or not); it may import only %v of hephc", hephc+o.pkg, d, o.allowed)
			}
		}
		if _, ok := all[hephc+o.pkg]; !ok {
			t.Errorf("%s: no such package", hephc+o.pkg)
		}
	}
	for _, l := range leaves {
		check(l, []string{hephc, cue}, "it is a leaf")
	}
	for p := range all {
		if rel := strings.TrimPrefix(p, hephc); !strings.HasPrefix(rel, "cmd/") {
			check(rel, []string{"cmd"}, "nothing below the CLI imports it")
		}
	}
}
