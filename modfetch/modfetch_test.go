package modfetch

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

func TestParseProxies(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"", "https://proxy.golang.org", ""},
		{"https://a.example,direct", "https://a.example", ""},
		{"https://a.example/|https://b.example", "https://a.example|https://b.example", ""},
		{"https://a.example,off,https://b.example", "https://a.example", ""},
		{"file:///srv/proxy,noproxy", "file:///srv/proxy", ""},
		{"direct", "", "names no module proxy"},
		{"off", "", "downloads are off"},
		{"ftp://a.example", "", "not an http, https or file URL"},
	} {
		p, err := ParseProxies(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseProxies(%q): got %v, want an error saying %q", c.in, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("ParseProxies(%q): %v", c.in, err)
		case c.err == "" && p.String() != c.want:
			t.Errorf("ParseProxies(%q) = %q, want %q", c.in, p.String(), c.want)
		}
	}
}

// TestEachFallsBackAsTheGoCommandDoes: after "," only a not-found answer
// moves on, after "|" any error does; the last proxy's error is returned.
func TestEachFallsBackAsTheGoCommandDoes(t *testing.T) {
	answers := map[string]error{
		"https://missing":  errors.Join(errors.New("https://missing: 404"), ErrNotFound),
		"https://broken":   errors.New("https://broken: 500 Internal Server Error"),
		"https://good":     nil,
		"https://missing2": ErrNotFound,
	}
	for _, c := range []struct {
		list  string
		asked []string
		err   string // "" for success
	}{
		{"https://missing,https://good", []string{"https://missing", "https://good"}, ""},
		{"https://broken,https://good", []string{"https://broken"}, "500"},
		{"https://broken|https://good", []string{"https://broken", "https://good"}, ""},
		{"https://missing,https://missing2", []string{"https://missing", "https://missing2"}, "not found"},
		{"https://broken|https://missing2", []string{"https://broken", "https://missing2"}, "not found"},
	} {
		p, err := ParseProxies(c.list)
		if err != nil {
			t.Fatal(err)
		}
		var asked []string
		err = p.Each(func(base string) error {
			asked = append(asked, base)
			return answers[base]
		})
		if !reflect.DeepEqual(asked, c.asked) {
			t.Errorf("GOPROXY=%s: asked %v, want %v", c.list, asked, c.asked)
		}
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("GOPROXY=%s: got %v, want %q", c.list, err, c.err)
		}
	}
}

func TestParseGoSum(t *testing.T) {
	gs, err := ParseGoSum(strings.NewReader(`
example.com/b v1.0.0 h1:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz=
example.com/b v1.0.0/go.mod h1:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=
example.com/A v1.0.0/go.mod h1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=
example.com/A v1.0.0/go.mod h1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range gs.GoMods {
		got = append(got, s.File()+" "+s.Sum)
	}
	want := []string{"example.com/!a/@v/v1.0.0.mod h1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=", "example.com/b/@v/v1.0.0.mod h1:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("go.mod sums: got %v, want %v", got, want)
	}
	wantZips := map[module.Version]string{{Path: "example.com/b", Version: "v1.0.0"}: "h1:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz="}
	if !reflect.DeepEqual(gs.Zips, wantZips) {
		t.Errorf("zip sums: got %v, want %v", gs.Zips, wantZips)
	}
	for _, bad := range []string{
		"example.com/a v1.0.0/go.mod h1:x= extra\n",
		"example.com/a v1.0.0/go.mod h2:xxx\n",
		"example.com/a v1.0.0 h2:xxx\n",
		"example.com/a v1.0.0/go.mod h1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\nexample.com/a v1.0.0/go.mod h1:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=\n",
		"example.com/a v1.0.0 h1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\nexample.com/a v1.0.0 h1:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=\n",
	} {
		if _, err := ParseGoSum(strings.NewReader(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// zipOf makes mod's zip from files (name → content) and returns its path.
func zipOf(t *testing.T, mod module.Version, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		f := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := modzip.CreateFromDir(&b, mod, dir); err != nil {
		t.Fatal(err)
	}
	zip := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(zip, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return zip
}

func TestUnzipChecksBeforeItExtracts(t *testing.T) {
	tc := module.Version{Path: ToolchainModule, Version: "v0.0.1-go1.26.8.linux-amd64"}
	zip := zipOf(t, tc, map[string]string{
		"bin/go":                       "#!/bin/sh\n",
		"pkg/tool/linux_amd64/compile": "#!/bin/sh\n",
		"src/fmt/print.go":             "package fmt\n",
	})
	dir := filepath.Join(t.TempDir(), "out")
	wrong := "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	err := Unzip(dir, tc, zip, wrong)
	var mismatch *SumMismatchError
	if !errors.As(err, &mismatch) || mismatch.Pinned != wrong || !strings.Contains(err.Error(), tc.String()+": hash mismatch: pinned "+wrong+", the proxy served h1:") {
		t.Fatalf("got %v, want a hash mismatch", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a zip of the wrong sum was extracted (%v)", err)
	}
	if err := Unzip(dir, tc, zip, mismatch.Served); err != nil {
		t.Fatal(err)
	}
	for name, exec := range map[string]bool{"bin/go": true, "pkg/tool/linux_amd64/compile": true, "src/fmt/print.go": false} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode()&0o111 != 0; got != exec {
			t.Errorf("%s: executable %v, want %v (mode %v)", name, got, exec, fi.Mode())
		}
	}

	if err := os.WriteFile(zip, []byte("not a zip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Unzip(filepath.Join(t.TempDir(), "x"), tc, zip, wrong); err == nil || !strings.Contains(err.Error(), "corrupt zip") {
		t.Errorf("a corrupt zip: got %v", err)
	}
}

// TestLinkModule: the layout the go command reads offline, and the go.mod
// files of a graph added beside it without replacing a pinned module's.
func TestLinkModule(t *testing.T) {
	modcache := t.TempDir()
	with := t.TempDir()
	os.WriteFile(filepath.Join(with, "go.mod"), []byte("module example.com/With\n"), 0o644)
	without := t.TempDir()
	const sum = "h1:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz="
	if err := LinkModule(modcache, module.Version{Path: "example.com/With", Version: "v1.0.0"}, sum, with); err != nil {
		t.Fatal(err)
	}
	if err := LinkModule(modcache, module.Version{Path: "example.com/without", Version: "v0.1.0"}, sum, without); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(filepath.Join(modcache, "example.com/!with@v1.0.0")); err != nil || got != with {
		t.Errorf("the module's directory: %q, %v; want a link to %s", got, err, with)
	}
	for file, want := range map[string]string{
		"cache/download/example.com/!with/@v/v1.0.0.mod":       "module example.com/With\n",
		"cache/download/example.com/!with/@v/v1.0.0.ziphash":   sum + "\n",
		"cache/download/example.com/!with/@v/v1.0.0.info":      `{"Version":"v1.0.0"}` + "\n",
		"cache/download/example.com/without/@v/v0.1.0.mod":     "module example.com/without\n",
		"cache/download/example.com/without/@v/v0.1.0.ziphash": sum + "\n",
	} {
		if b, err := os.ReadFile(filepath.Join(modcache, file)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", file, b, err, want)
		}
	}

	tree := t.TempDir()
	for _, f := range []string{"example.com/!with/@v/v1.0.0.mod", "example.com/other/@v/v2.0.0.mod"} {
		p := filepath.Join(tree, ModFilesDir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("module from-the-graph\n"), 0o644)
	}
	n, err := LinkModFiles(modcache, tree)
	if err != nil || n != 1 {
		t.Fatalf("LinkModFiles: %d, %v; want 1 added", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(modcache, "cache/download/example.com/!with/@v/v1.0.0.mod")); string(b) != "module example.com/With\n" {
		t.Errorf("the graph's go.mod replaced the pinned module's: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(modcache, "cache/download/example.com/other/@v/v2.0.0.mod")); string(b) != "module from-the-graph\n" {
		t.Errorf("the graph's go.mod of another module: %q", b)
	}
}

func TestHashGoMod(t *testing.T) {
	// github.com/BurntSushi/toml v1.5.0's go.mod, and its sum in
	// sum.golang.org.
	sum, err := HashGoMod([]byte("module github.com/BurntSushi/toml\n\ngo 1.18\n"))
	if want := "h1:ukJfTF/6rtPPRCnwkur4qwRxa8vTRFBF0uk2lLoLwho="; err != nil || sum != want {
		t.Errorf("got %q, %v; want %s", sum, err, want)
	}
}
