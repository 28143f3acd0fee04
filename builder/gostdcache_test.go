package builder

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/realize"
)

// goRoot is the host's Go toolchain.
func goRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// goRun runs the host's go command with the builders' environment
// (goEnviron), its cache at gocache, in dir, and returns its stderr.
func goRun(t *testing.T, dir, gocache string, args ...string) string {
	t.Helper()
	goroot := goRoot(t)
	cmd := exec.Command(filepath.Join(goroot, "bin", "go"), args...)
	cmd.Dir = dir
	cmd.Env = append(goEnviron(goroot, t.TempDir(), nil), "GOCACHE="+gocache, "TMPDIR="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stderr.String()
}

// readTree reads every regular file below dir.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// A cache of std packages (here fmt and what it imports, as goStdCache
// fills it with all of std) holds no time once normalized (that two
// stores build the same std cache is TestImageIsReproducible's), and a
// build seeded with it (seedGoCacheFrom) compiles only its own package,
// even with build tags (here goshsmall, as a program may set them): the
// go command's action IDs match. The build still gets a correct program.
// Vet's half (#GoStdVet), made from the compiled half, holds none of its
// entries, and a go test seeded with both vets only its own package,
// where one seeded with the compiled half alone vets fmt's packages too.
func TestStdCacheIsReused(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles part of the standard library twice")
	}
	goroot := goRoot(t)
	cacheEnv := func(cache string) []string {
		return append(goEnviron(goroot, t.TempDir(), nil), "GOCACHE="+cache, "TMPDIR="+t.TempDir())
	}
	cache := t.TempDir()
	var fillLog bytes.Buffer
	if err := buildStdCache(goroot, cacheEnv(cache), "fmt", &fillLog, &fillLog); err != nil {
		t.Fatalf("%v\n%s", err, fillLog.String())
	}
	n, err := normalizeGoCache(cache)
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("the cache of fmt has %d action entries; want its dozens of packages", n)
	}
	files := readTree(t, cache)
	if _, ok := files["trim.txt"]; ok {
		t.Error("trim.txt (a time) is left")
	}
	for name, content := range files {
		if strings.HasSuffix(name, "-a") && !strings.HasSuffix(content, strings.Repeat(" ", 19)+"0\n") {
			t.Errorf("%s: time not zeroed: %q", name, content)
		}
	}

	vetCache := t.TempDir()
	if _, err := seedGoCacheFrom(cache, vetCache); err != nil {
		t.Fatal(err)
	}
	if err := vetStdCache(goroot, cacheEnv(vetCache), "fmt", &fillLog, &fillLog); err != nil {
		t.Fatalf("%v\n%s", err, fillLog.String())
	}
	if err := dropSeeded(cache, vetCache); err != nil {
		t.Fatal(err)
	}
	if _, err := normalizeGoCache(vetCache); err != nil {
		t.Fatal(err)
	}
	vetFiles := readTree(t, vetCache)
	for name := range vetFiles {
		if _, ok := files[name]; ok {
			t.Errorf("vet's half holds %s of the compiled half", name)
		}
	}
	if len(vetFiles) < 10 {
		t.Errorf("vet's half has %d files; want the facts of fmt's dozens of packages", len(vetFiles))
	}

	mod := t.TempDir()
	os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module example.com/hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(greeting) }\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "small.go"), []byte("//go:build goshsmall\n\npackage main\n\nconst greeting = \"small\"\n"), 0o644)
	seeded := func(from ...string) string {
		dst := t.TempDir()
		for _, src := range from {
			if n, err := seedGoCacheFrom(src, dst); err != nil || n == 0 {
				t.Fatalf("seeding from %s: %d entries, %v", src, n, err)
			}
		}
		return dst
	}
	bin := filepath.Join(t.TempDir(), "hello")
	args := append(append([]string{"build", "-x"}, goBuildFlags...), "-buildvcs=false", "-tags", "goshsmall", "-o", bin, ".")
	log := goRun(t, mod, seeded(cache), args...)
	if c := strings.Count(log, "/compile -o "); c != 1 {
		t.Errorf("the seeded build ran the compiler %d times; want once, for its main package:\n%s", c, log)
	}
	out, err := exec.Command(bin).Output()
	if err != nil || string(out) != "small\n" {
		t.Errorf("the program printed %q (%v); want small", out, err)
	}

	os.WriteFile(filepath.Join(mod, "main_test.go"), []byte("package main\n\nimport \"testing\"\n\nfunc TestGreeting(t *testing.T) {\n\tif greeting != \"small\" {\n\t\tt.Fatal(greeting)\n\t}\n}\n"), 0o644)
	args = append(append([]string{"test", "-x"}, goBuildFlags...), "-buildvcs=false", "-tags", "goshsmall", ".")
	if c := strings.Count(goRun(t, mod, seeded(cache, vetCache), args...), "/vet "); c != 1 {
		t.Errorf("the go test seeded with both halves ran vet %d times; want once, for its own package", c)
	}
	if c := strings.Count(goRun(t, mod, seeded(cache), args...), "/vet "); c < 10 {
		t.Errorf("the go test seeded with the compiled half alone ran vet %d times; want fmt's packages too", c)
	}
}

// A cache with anything but the go command's entries is refused, both
// when it is made and when a build starts from it; and an input gostd
// that is not a std cache is refused.
func TestStdCacheRefusesForeignFiles(t *testing.T) {
	for _, bad := range []func(dir string) error{
		func(dir string) error { return os.WriteFile(filepath.Join(dir, "00", "evil"), nil, 0o644) },
		func(dir string) error {
			return os.Symlink("/etc/passwd", filepath.Join(dir, "00", strings.Repeat("0", 64)+"-d"))
		},
	} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "00"), 0o755)
		if err := bad(dir); err != nil {
			t.Fatal(err)
		}
		if _, err := normalizeGoCache(dir); err == nil || !strings.Contains(err.Error(), "unexpected file 00/") {
			t.Errorf("normalizeGoCache: %v; want an unexpected file", err)
		}
		if _, err := seedGoCacheFrom(dir, t.TempDir()); err == nil || !strings.Contains(err.Error(), "unexpected file 00/") {
			t.Errorf("seedGoCacheFrom: %v; want an unexpected file", err)
		}
	}
	entry := filepath.Join(t.TempDir(), "00")
	os.MkdirAll(entry, 0o755)
	if err := os.WriteFile(filepath.Join(entry, strings.Repeat("0", 64)+"-a"), []byte("not an entry\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := normalizeGoCache(filepath.Dir(entry)); err == nil || !strings.Contains(err.Error(), "not a go command cache entry") {
		t.Errorf("normalizeGoCache of a malformed entry: %v", err)
	}
	for _, in := range []map[string]realize.InputInfo{
		{"gostd": {Path: "/heph/store/x-files", Builder: builtins.FetchFile}},
		{"gostd": {Path: "/heph/store/x-go-std-vet", Builder: builtins.GoStdCache, Attrs: map[string]any{"vet": true}}},
		{"gostdvet": {Path: "/heph/store/x-go-std-cache", Builder: builtins.GoStdCache, Attrs: map[string]any{"vet": false}}},
	} {
		if err := seedGoCache(&realize.BuildInfo{Inputs: in}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "is not a builtin:go-std-cache output") {
			t.Errorf("seedGoCache of %v: %v", in, err)
		}
	}
}

// The std cache's attrs are the builders' platform and flags, and vet:
// true for vet's half alone; anything else is refused.
func TestStdCacheAttrs(t *testing.T) {
	with := func(k string, v any) map[string]any {
		a := goStdCacheAttrs()
		a[k] = v
		return a
	}
	for _, c := range []struct {
		attrs map[string]any
		vet   bool
		err   string
	}{
		{goStdCacheAttrs(), false, ""},
		{with("vet", true), true, ""},
		{with("vet", "yes"), false, "attrs.vet is yes"},
		{func() map[string]any { a := goStdCacheAttrs(); delete(a, "vet"); return a }(), false, "attrs.vet is <nil>"},
		{with("goarch", "arm64"), false, "attrs.goarch is arm64"},
		{with("tags", "x"), false, "unknown attrs.tags"},
	} {
		vet, err := checkStdCacheAttrs(c.attrs)
		if vet != c.vet || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("checkStdCacheAttrs(%v) = %v, %v; want %v, %q", c.attrs, vet, err, c.vet, c.err)
		}
	}
}
