package store

import (
	"encoding/json"
	"strings"
	"testing"
)

// inputHash returns a stand-in hash for an input derivation called name.
func inputHash(name string) DrvHash { return HashDerivation([]byte(name)) }

// regular returns a small non-fixed-output derivation; each call returns
// fresh maps and slices, so tests may change them.
func regular() *Derivation {
	return &Derivation{
		Name:    "hello",
		Version: "2.12.1",
		System:  "x86_64-linux",
		Builder: "@{toolchain}/bin/go",
		Args:    []string{"build", "-C", "@{src}", "./cmd/hello"},
		Env:     map[string]string{"CGO_ENABLED": "0", "GOFLAGS": "-trimpath"},
		Inputs: map[string]DrvHash{
			"toolchain": inputHash("toolchain"),
			"src":       inputHash("src"),
			"deps.0":    inputHash("dep0"),
		},
		Attrs: map[string]any{"main": "./cmd/hello", "tags": []any{"netgo"}},
	}
}

// fixed returns a small fixed-output derivation.
func fixed() *Derivation {
	return &Derivation{
		Name:       "src",
		Version:    "1.0",
		System:     "x86_64-linux",
		Builder:    "builtin:fetch-url",
		Args:       []string{"--quiet"},
		Env:        map[string]string{"A": "b"},
		Inputs:     map[string]DrvHash{"curl": inputHash("curl")},
		Attrs:      map[string]any{"url": "https://example.org/src.tar.gz"},
		OutputHash: "blake3:" + strings.Repeat("ab", 32),
	}
}

func mustHash(t *testing.T, d *Derivation) DrvHash {
	t.Helper()
	h, err := d.Hash()
	if err != nil {
		t.Fatalf("Hash(%+v): %v", d, err)
	}
	return h
}

func mustCanonical(t *testing.T, d *Derivation) string {
	t.Helper()
	c, err := d.Canonical()
	if err != nil {
		t.Fatalf("Canonical(%+v): %v", d, err)
	}
	return string(c)
}

// TestDerivationGolden pins the canonical bytes and the hash of a fixed
// derivation. If it fails, the encoding changed and every store path with
// it: change the test only on purpose, and say so in docs/derivation.md.
func TestDerivationGolden(t *testing.T) {
	d := &Derivation{
		Name:    "hello",
		Version: "1.0",
		System:  "x86_64-linux",
		Builder: "builtin:go-build",
		Args:    []string{"-C", "@{src}"},
		Env:     map[string]string{"B": "2", "A": "1"},
		Inputs:  map[string]DrvHash{"src": {}},
		Attrs:   map[string]any{"n": 3, "s": "é\n"},
	}
	const wantCanonical = `{"args":["-C","@{src}"],"attrs":{"n":3,"s":"é\u000a"},"builder":"builtin:go-build",` +
		`"env":{"A":"1","B":"2"},"inputs":{"src":"0000000000000000000000000000000000000000000000000000"},` +
		`"name":"hello","system":"x86_64-linux","type":"derivation","version":"1.0"}`
	if got := mustCanonical(t, d); got != wantCanonical {
		t.Errorf("Canonical() =\n%s\nwant\n%s", got, wantCanonical)
	}
	const wantHash = "yhfbg5c3x3p2ai4l4lmnyhra09y6y5mbmyhr1hfbsj5v1qnq6aw0"
	if got := mustHash(t, d).String(); got != wantHash {
		t.Errorf("Hash() = %s, want %s", got, wantHash)
	}
	p, err := d.Path()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "/heph/store/"+wantHash+"-hello"; got != want {
		t.Errorf("Path() = %s, want %s", got, want)
	}

	f := &Derivation{Name: "src", OutputHash: "blake3:" + strings.Repeat("0", 64)}
	const wantFixedCanonical = `{"name":"src","outputHash":"blake3:0000000000000000000000000000000000000000000000000000000000000000","type":"fixed-output"}`
	if got := mustCanonical(t, f); got != wantFixedCanonical {
		t.Errorf("Canonical() =\n%s\nwant\n%s", got, wantFixedCanonical)
	}
	const wantFixedHash = "xjanb4iqkmsal4kq31whsca1mmv2qw53pl5409ks2xfsnqbqas70"
	if got := mustHash(t, f).String(); got != wantFixedHash {
		t.Errorf("Hash() = %s, want %s", got, wantFixedHash)
	}
}

func TestCanonicalEmptyDerivation(t *testing.T) {
	// Absent and empty collections encode the same: every field is present.
	want := `{"args":[],"attrs":{},"builder":"","env":{},"inputs":{},"name":"","system":"","type":"derivation","version":""}`
	if got := mustCanonical(t, &Derivation{}); got != want {
		t.Errorf("Canonical() = %s, want %s", got, want)
	}
	empty := &Derivation{Args: []string{}, Env: map[string]string{}, Inputs: map[string]DrvHash{}, Attrs: map[string]any{}}
	if got := mustCanonical(t, empty); got != want {
		t.Errorf("Canonical() with empty collections = %s, want %s", got, want)
	}
}

func TestCanonicalIgnoresMapOrder(t *testing.T) {
	// Go randomizes map iteration; hash the same derivation many times.
	want := mustHash(t, regular())
	for i := 0; i < 50; i++ {
		if got := mustHash(t, regular()); got != want {
			t.Fatalf("Hash() = %v on run %d, want %v", got, i, want)
		}
	}
}

func TestFixedOutputHashIgnoresRecipe(t *testing.T) {
	want := mustHash(t, fixed())
	for _, tc := range []struct {
		name   string
		change func(d *Derivation)
	}{
		{"version", func(d *Derivation) { d.Version = "2.0" }},
		{"system", func(d *Derivation) { d.System = "aarch64-linux" }},
		{"builder", func(d *Derivation) { d.Builder = "builtin:fetch-git" }},
		{"args", func(d *Derivation) { d.Args = append(d.Args, "--mirror") }},
		{"no args", func(d *Derivation) { d.Args = nil }},
		{"env", func(d *Derivation) { d.Env["A"] = "c" }},
		{"inputs", func(d *Derivation) { d.Inputs["wget"] = inputHash("wget") }},
		{"input hash", func(d *Derivation) { d.Inputs["curl"] = inputHash("curl2") }},
		{"attrs url", func(d *Derivation) { d.Attrs["url"] = "https://mirror.example.net/src.tar.gz" }},
		{"attrs added", func(d *Derivation) { d.Attrs["mirrors"] = []any{"a", "b"} }},
		{"attrs unencodable", func(d *Derivation) { d.Attrs["f"] = 1.5 }},
	} {
		d := fixed()
		tc.change(d)
		if got := mustHash(t, d); got != want {
			t.Errorf("after changing %s: Hash() = %v, want %v", tc.name, got, want)
		}
	}

	for _, tc := range []struct {
		name   string
		change func(d *Derivation)
	}{
		{"name", func(d *Derivation) { d.Name = "src2" }},
		{"outputHash", func(d *Derivation) { d.OutputHash = "blake3:" + strings.Repeat("cd", 32) }},
		{"outputHash form", func(d *Derivation) { d.OutputHash = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" }},
		{"not fixed", func(d *Derivation) { d.OutputHash = "" }},
	} {
		d := fixed()
		tc.change(d)
		if got := mustHash(t, d); got == want {
			t.Errorf("after changing %s: Hash() = %v, want it to differ", tc.name, got)
		}
	}
}

func TestRegularHashDependsOnEverything(t *testing.T) {
	base := mustHash(t, regular())
	seen := map[DrvHash]string{base: "base"}
	for _, tc := range []struct {
		name   string
		change func(d *Derivation)
	}{
		{"name", func(d *Derivation) { d.Name = "hello2" }},
		{"version", func(d *Derivation) { d.Version = "2.12.2" }},
		{"empty version", func(d *Derivation) { d.Version = "" }},
		{"system", func(d *Derivation) { d.System = "aarch64-linux" }},
		{"builder", func(d *Derivation) { d.Builder = "builtin:go-build" }},
		{"args order", func(d *Derivation) { d.Args[0], d.Args[1] = d.Args[1], d.Args[0] }},
		{"args appended", func(d *Derivation) { d.Args = append(d.Args, "") }},
		{"args removed", func(d *Derivation) { d.Args = nil }},
		{"env value", func(d *Derivation) { d.Env["CGO_ENABLED"] = "1" }},
		{"env added", func(d *Derivation) { d.Env["HOME"] = "/build" }},
		{"env key renamed", func(d *Derivation) { delete(d.Env, "GOFLAGS"); d.Env["GOFLAGS2"] = "-trimpath" }},
		{"input hash", func(d *Derivation) { d.Inputs["deps.0"] = inputHash("dep0-patched") }},
		{"input added", func(d *Derivation) { d.Inputs["deps.1"] = inputHash("dep1") }},
		{"input renamed", func(d *Derivation) { d.Inputs["deps.1"] = d.Inputs["deps.0"]; delete(d.Inputs, "deps.0") }},
		{"attrs value", func(d *Derivation) { d.Attrs["main"] = "./cmd/hi" }},
		{"attrs nested", func(d *Derivation) { d.Attrs["tags"] = []any{"netgo", "osusergo"} }},
		{"attrs type", func(d *Derivation) { d.Attrs["tags"] = "netgo" }},
		{"attrs number", func(d *Derivation) { d.Attrs["jobs"] = 1 }},
		{"attrs null", func(d *Derivation) { d.Attrs["jobs"] = nil }},
		{"attrs removed", func(d *Derivation) { d.Attrs = nil }},
	} {
		d := regular()
		tc.change(d)
		got := mustHash(t, d)
		if prev, ok := seen[got]; ok {
			t.Errorf("after changing %s: Hash() = %v, the same as after %s; want a new hash", tc.name, got, prev)
			continue
		}
		seen[got] = tc.name
	}
}

func TestCanonicalFieldsDoNotBleed(t *testing.T) {
	// A value moved from one field to another must change the hash:
	// the encoding keeps fields apart.
	a := &Derivation{Name: "x", Args: []string{"a=b"}}
	b := &Derivation{Name: "x", Env: map[string]string{"a": "b"}}
	if mustHash(t, a) == mustHash(t, b) {
		t.Errorf("args [a=b] and env {a: b} hash the same, want different")
	}
	c := &Derivation{Name: "x", Args: []string{"a", "b"}}
	e := &Derivation{Name: "x", Args: []string{"a,b"}}
	if mustHash(t, c) == mustHash(t, e) {
		t.Errorf("args [a b] and [a,b] hash the same, want different")
	}
}

func TestCanonicalRejectsUnencodable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(d *Derivation)
	}{
		{"float attr", func(d *Derivation) { d.Attrs["x"] = 0.5 }},
		{"invalid UTF-8 name", func(d *Derivation) { d.Name = "\xff" }},
		{"invalid UTF-8 arg", func(d *Derivation) { d.Args = []string{"\xff"} }},
		{"invalid UTF-8 env key", func(d *Derivation) { d.Env["\xff"] = "" }},
		{"invalid UTF-8 input name", func(d *Derivation) { d.Inputs["\xff"] = DrvHash{} }},
		{"struct attr", func(d *Derivation) { d.Attrs["x"] = struct{}{} }},
	} {
		d := regular()
		tc.change(d)
		if _, err := d.Hash(); err == nil {
			t.Errorf("after %s: Hash() succeeded, want an error", tc.name)
		}
		if _, err := d.Path(); err == nil {
			t.Errorf("after %s: Path() succeeded, want an error", tc.name)
		}
	}
}

func TestDerivationPath(t *testing.T) {
	d := regular()
	p, err := d.Path()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Path{Hash: mustHash(t, d), Name: "hello"}); p != want {
		t.Errorf("Path() = %v, want %v", p, want)
	}
	back, err := ParsePath(p.String())
	if err != nil {
		t.Fatalf("ParsePath(%q): %v", p, err)
	}
	if back != p {
		t.Errorf("ParsePath(%q) = %v, want %v", p, back, p)
	}
}

func TestParseDerivationRoundTrip(t *testing.T) {
	for _, d := range []*Derivation{regular(), fixed(), {}} {
		want := mustCanonical(t, d)
		// From encoding/json's form.
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseDerivation(b)
		if err != nil {
			t.Fatalf("ParseDerivation(%s): %v", b, err)
		}
		if got := mustCanonical(t, p); got != want {
			t.Errorf("Canonical(ParseDerivation(json.Marshal)) = %s, want %s", got, want)
		}
		// From the canonical form.
		p, err = ParseDerivation([]byte(want))
		if err != nil {
			t.Fatalf("ParseDerivation(%s): %v", want, err)
		}
		if got := mustCanonical(t, p); got != want {
			t.Errorf("Canonical(ParseDerivation(canonical)) = %s, want %s", got, want)
		}
	}
}

func TestParseDerivationNumbers(t *testing.T) {
	d, err := ParseDerivation([]byte(`{"name":"x","attrs":{"n":12,"big":9007199254740993}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := d.Attrs["n"].(json.Number); !ok || got != "12" {
		t.Errorf("attrs.n = %#v, want json.Number(\"12\")", d.Attrs["n"])
	}
	// 2^53+1 is not a float64; as a json.Number it survives.
	if got := mustCanonical(t, d); !strings.Contains(got, `"big":9007199254740993`) {
		t.Errorf("Canonical() = %s, want it to keep 9007199254740993", got)
	}
}

func TestParseDerivationRejects(t *testing.T) {
	for _, s := range []string{
		``,
		`[]`,
		`{"name":1}`,
		`{"nmae":"x"}`,
		`{"name":"x","inputs":{"a":"not-a-hash"}}`,
		`{"name":"x","inputs":{"a":"` + strings.ToUpper(sampleDrvHash().String()) + `"}}`,
		`{"name":"x","args":[1]}`,
		`{"name":"x","env":{"A":1}}`,
		`{"name":"x"`,
	} {
		if d, err := ParseDerivation([]byte(s)); err == nil {
			t.Errorf("ParseDerivation(%s) = %+v, nil; want an error", s, d)
		}
	}
}

func TestPlaceholders(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"no placeholders", nil},
		{"@{a}", []string{"a"}},
		{"@{toolchain}/bin/go", []string{"toolchain"}},
		{"-I@{deps.0}/include -L@{bin.age}/lib", []string{"deps.0", "bin.age"}},
		{"@{a}@{a}", []string{"a", "a"}},
		{"@{}", []string{""}},
		{"@{unclosed", nil},
		{"{a} @a ${a}", nil},
	} {
		got := Placeholders(tc.in)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("Placeholders(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestInputNames(t *testing.T) {
	got := regular().InputNames()
	want := []string{"deps.0", "src", "toolchain"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("InputNames() = %q, want %q", got, want)
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, d := range []*Derivation{
		regular(),
		fixed(),
		{Name: "x", Builder: "builtin:fetch-url"},
		{
			Name:    "age",
			Builder: "@{bin.age}/bin/age",
			Args:    []string{"@{deps.0}", "@{deps.1}"},
			Env:     map[string]string{"_X": "@{bin.age}", "PATH": "@{deps.0}/bin:@{deps.1}/bin"},
			Inputs:  map[string]DrvHash{"deps.0": {}, "deps.1": {}, "bin.age": {}, "bin.go-1.26": {}},
		},
	} {
		if errs := d.Validate(); len(errs) != 0 {
			t.Errorf("Validate(%+v) = %v, want no errors", d, errs)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(d *Derivation)
		want   string // a substring of the one error
	}{
		{"unknown placeholder in args", func(d *Derivation) { d.Args = append(d.Args, "@{x}") }, "args[4]: @{x} names no input"},
		{"unknown placeholder in env", func(d *Derivation) { d.Env["X"] = "@{missing}/bin" }, "env.X: @{missing} names no input"},
		{"unknown placeholder in builder", func(d *Derivation) { d.Builder = "@{go}/bin/go" }, "builder: @{go} names no input"},
		{"empty placeholder", func(d *Derivation) { d.Args = []string{"@{}"} }, "args[0]: @{} names no input"},
		{"NUL in arg", func(d *Derivation) { d.Args = []string{"a\x00b"} }, "args[0]: contains a NUL byte"},
		{"NUL in env", func(d *Derivation) { d.Env["X"] = "\x00" }, "env.X: contains a NUL byte"},
		{"NUL in builder", func(d *Derivation) { d.Builder = "@{toolchain}/bin/go\x00" }, "builder: contains a NUL byte"},
		{"env name with dash", func(d *Derivation) { d.Env["A-B"] = "" }, `"A-B" is not a variable name`},
		{"env name with digit first", func(d *Derivation) { d.Env["1A"] = "" }, `"1A" is not a variable name`},
		{"env name empty", func(d *Derivation) { d.Env[""] = "" }, `"" is not a variable name`},
		{"env name with =", func(d *Derivation) { d.Env["A=B"] = "" }, `"A=B" is not a variable name`},
		{"bad name", func(d *Derivation) { d.Name = "a/b" }, "invalid store name"},
		{"empty name", func(d *Derivation) { d.Name = "" }, "invalid store name"},
		{"builder not builtin or input", func(d *Derivation) { d.Builder = "/bin/sh" }, "want builtin:NAME or @{input}/path"},
		{"builtin with capitals", func(d *Derivation) { d.Builder = "builtin:Go" }, "want builtin:NAME or @{input}/path"},
		{"input name with slash", func(d *Derivation) { d.Inputs["a/b"] = DrvHash{} }, `"a/b" is not an input name`},
		{"input name starting with dot", func(d *Derivation) { d.Inputs[".a"] = DrvHash{} }, `".a" is not an input name`},
		{"input name with empty key", func(d *Derivation) { d.Inputs["deps."] = DrvHash{} }, `"deps." is not an input name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := regular()
			tc.change(d)
			errs := d.Validate()
			if len(errs) != 1 {
				t.Fatalf("Validate() = %v, want one error containing %q", errs, tc.want)
			}
			if !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", errs[0], tc.want)
			}
		})
	}
}

func TestValidateStableOrder(t *testing.T) {
	d := regular()
	d.Name = ""
	d.Env["Z"] = "@{z}"
	d.Env["A"] = "@{a}"
	d.Env["M-1"] = "\x00"
	d.Args = []string{"@{b}"}
	var want []string
	for _, err := range d.Validate() {
		want = append(want, err.Error())
	}
	if len(want) != 6 {
		t.Errorf("Validate() = %q, want 6 errors", want)
	}
	for i := 0; i < 20; i++ {
		var got []string
		for _, err := range d.Validate() {
			got = append(got, err.Error())
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("Validate() = %q, want %q", got, want)
		}
	}
}
