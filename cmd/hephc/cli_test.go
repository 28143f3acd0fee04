package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// violation makes a policy violation.
func violation(rule, attr, text string, pol, sys srcpos.Pos) policy.Violation {
	return policy.Violation{Rule: rule, Attr: attr, Text: text, Policy: pol, System: sys}
}

// TestPrintError sends each kind of error through printError, the one
// path the CLI prints errors by, and wants the bytes hephc has always
// printed for it: file:line:col: path: message, related positions on
// tab-indented lines, the summary line.
func TestPrintError(t *testing.T) {
	cwd := t.TempDir()
	at := func(file string, line, col int) srcpos.Pos {
		return srcpos.Pos{File: filepath.Join(cwd, file), Line: line, Col: col}
	}
	long := strings.Repeat("x", 70)
	vs := policy.Violations{
		violation("licenses.allow", "base.packages.age.meta.license", `license "GPL-3.0-only" is not allowed (allowed: MIT)`, at("policy.cue", 4, 3), at("system.cue", 12, 14)),
		violation("versions.minimum.\"golang.org/x/crypto\"", `modules."golang.org/x/crypto".version`, "golang.org/x/crypto v0.1.0 is older than the minimum v0.35.0", at("policy.cue", 9, 25), at("system.cue", 20, 12)),
		violation("every.goModule.path", "images.ws.files[0]", fmt.Sprintf("%q is not allowed", long), at("policy.cue", 11, 9), srcpos.Pos{File: "/elsewhere/other.cue", Line: 2, Col: 1}),
		violation("groups.base.provides", "groups.base", "the configuration has no group groups.base, which must provide threat-reporting", at("policy.cue", 14, 2), srcpos.Pos{}),
		violation("maxClosureBytes", "images.server", "the closure of image server is 2.0 MiB (2097152 bytes), more than 1 bytes", srcpos.Pos{}, at("system.cue", 30, 1)),
	}

	// CUE's own errors: a conflict, a value none of a disjunction's
	// alternatives take, and eval's errors among them.
	ctx := cuecontext.New()
	v := ctx.CompileString("a: 1\na: 2\nb: \"x\" & (\"y\" | \"z\")\n", cue.Filename(filepath.Join(cwd, "x.cue")))
	cueErr := v.Validate()
	if cueErr == nil {
		t.Fatal("the conflicting value validated")
	}

	// The schema's positions, related: eval of a configuration.
	writeFile := func(name, src string) string {
		p := filepath.Join(cwd, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sys := writeFile("system.cue", "package system\n\nimport \"hephc.dev/heph\"\n\nx: heph.#Derivation & {\n\tname:    \"../x\"\n\tbuilder: \"builtin:exec\"\n}\ny: heph.#Derivation & {name: \"y\", builder: \"builtin:exec\", inputs: {a: x, b: 3}}\n")
	cfg, err := lang.NewLoader(cwd).Load(sys)
	if err != nil {
		t.Fatal(err)
	}
	_, evalErr := eval.Build(cfg.Value, eval.Options{})
	if evalErr == nil {
		t.Fatal("the bad configuration evaluated")
	}
	_, evalAttrErr := eval.Build(cfg.Value, eval.Options{Attr: "policy.x"})

	// The loader's diagnostics: a syntax error.
	bad := writeFile("bad.cue", "package system\n\nx: {\n")
	_, loadErr := lang.NewLoader(cwd).Load(bad)
	if loadErr == nil {
		t.Fatal("the file that does not parse loaded")
	}

	drv := store.Path{Hash: store.HashDerivation([]byte("app")), Name: "app"}
	lib := store.Path{Hash: store.HashDerivation([]byte("lib")), Name: "lib"}
	buildErr := &realize.BuildError{
		Path: drv, Origin: store.Origin{Attr: "base.packages.app", Pos: at("system.cue", 7, 2)},
		LogPath: "/var/log/app.log", LogTail: []string{"go: building", "exit status 1"}, Err: errors.New("builder exited with status 1"),
	}
	buildErr2 := &realize.BuildError{Path: lib, Err: errors.New("killed")}

	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"violations", vs, "" +
			"system.cue:12:14: base.packages.age.meta.license: license \"GPL-3.0-only\" is not allowed (allowed: MIT)\n" +
			"\tpolicy.cue:4:3: rule licenses.allow\n" +
			"system.cue:20:12: modules.\"golang.org/x/crypto\".version: golang.org/x/crypto v0.1.0 is older than the minimum v0.35.0\n" +
			"\tpolicy.cue:9:25: rule versions.minimum.\"golang.org/x/crypto\"\n" +
			"/elsewhere/other.cue:2:1: images.ws.files[0]: \"" + long + "\" is not allowed\n" +
			"\tpolicy.cue:11:9: rule every.goModule.path\n" +
			"hephc: groups.base: the configuration has no group groups.base, which must provide threat-reporting\n" +
			"\tpolicy.cue:14:2: rule groups.base.provides\n" +
			"system.cue:30:1: images.server: the closure of image server is 2.0 MiB (2097152 bytes), more than 1 bytes\n" +
			"\t?: rule maxClosureBytes\n" +
			"hephc: 5 violations of policy\n"},
		{"one violation, wrapped", fmt.Errorf("checking: %w", vs[:1]), "" +
			"system.cue:12:14: base.packages.age.meta.license: license \"GPL-3.0-only\" is not allowed (allowed: MIT)\n" +
			"\tpolicy.cue:4:3: rule licenses.allow\n" +
			"hephc: 1 violation of policy\n"},
		{"CUE errors", cueErr, "" +
			"x.cue:2:4: a: conflicting values 2 and 1\n" +
			"\tx.cue:1:4\n" +
			"x.cue:3:17: b: invalid value \"x\" (want \"y\" or \"z\")\n" +
			"\tx.cue:3:4\n" +
			"\tx.cue:3:11\n"},
		{"eval errors", evalErr, "" +
			"system.cue:6:11: x.name: invalid value \"../x\" (a store name is 1 to 200 bytes of A-Z a-z 0-9 + . _ ? = -, not starting with '.' and without '..')\n" +
			"\tschema: hephc.dev/heph/derivation.cue:14:8\n" +
			"\tschema: hephc.dev/heph/derivation.cue:62:12\n" +
			"\tschema: hephc.dev/heph/derivation.cue:14:57\n" +
			"system.cue:9:75: y.inputs.b: input b is not a derivation (want a reference to a derivation, or a list or struct of them)\n"},
		{"eval error without a position", evalAttrErr, "" +
			"hephc: attribute policy.x: the configuration's policy is not part of the graph: nothing in it is built\n"},
		{"loader diagnostics", loadErr, "" +
			"bad.cue:3:6: expected '}', found 'EOF'\n"},
		{"build errors", errors.Join(buildErr, buildErr2), "" +
			"hephc: building " + drv.String() + " (base.packages.app at system.cue:7:2) failed: builder exited with status 1\n" +
			"last 2 log lines:\n" +
			"  | go: building\n" +
			"  | exit status 1\n" +
			"full log: /var/log/app.log\n" +
			"hephc: building " + lib.String() + " failed: killed\n"},
		{"a build error among others", errors.Join(buildErr2, errors.New("dependency failed")), "" +
			"hephc: building " + lib.String() + ": killed\n" +
			"dependency failed\n"},
		{"plain error", fmt.Errorf("opening the store: %w", os.ErrPermission), "hephc: opening the store: permission denied\n"},
		{"already reported", silentError{}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			printError(&env{stderr: &stderr, cwd: cwd}, c.err)
			if got := stderr.String(); got != c.want {
				t.Errorf("got\n%s\nwant\n%s\n(got %q)", got, c.want, got)
			}
		})
	}
}
