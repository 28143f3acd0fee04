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
// fills it with all of std: compiled, and vet's facts) holds no time once normalized (that two stores
// build the same std cache is TestImageIsReproducible's), and a build
// seeded with it (seedGoCacheFrom) compiles only its own package, even
// with build tags (here goshsmall, as a program may set them): the go
// command's action IDs match. The build still gets a correct program.
func TestStdCacheIsReused(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles part of the standard library twice")
	}
	cache := t.TempDir()
	goroot := goRoot(t)
	env := append(goEnviron(goroot, t.TempDir(), nil), "GOCACHE="+cache, "TMPDIR="+t.TempDir())
	var fillLog bytes.Buffer
	if err := fillStdCache(goroot, env, "fmt", &fillLog, &fillLog); err != nil {
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

	seeded := t.TempDir()
	n, err = seedGoCacheFrom(cache, seeded)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no entry seeded")
	}
	mod := t.TempDir()
	os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module example.com/hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(greeting) }\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "small.go"), []byte("//go:build goshsmall\n\npackage main\n\nconst greeting = \"small\"\n"), 0o644)
	bin := filepath.Join(t.TempDir(), "hello")
	args := append(append([]string{"build", "-x"}, goBuildFlags...), "-buildvcs=false", "-tags", "goshsmall", "-o", bin, ".")
	log := goRun(t, mod, seeded, args...)
	if c := strings.Count(log, "/compile -o "); c != 1 {
		t.Errorf("the seeded build ran the compiler %d times; want once, for its main package:\n%s", c, log)
	}
	out, err := exec.Command(bin).Output()
	if err != nil || string(out) != "small\n" {
		t.Errorf("the program printed %q (%v); want small", out, err)
	}

	// go test vets only its own package: the facts of fmt and what it
	// imports are in the cache.
	os.WriteFile(filepath.Join(mod, "main_test.go"), []byte("package main\n\nimport \"testing\"\n\nfunc TestGreeting(t *testing.T) {\n\tif greeting != \"small\" {\n\t\tt.Fatal(greeting)\n\t}\n}\n"), 0o644)
	args = append(append([]string{"test", "-x"}, goBuildFlags...), "-buildvcs=false", "-tags", "goshsmall", ".")
	log2 := goRun(t, mod, seeded, args...)
	if c := strings.Count(log2, "/vet "); c != 1 {
		t.Errorf("the seeded go test ran vet %d times; want once, for its own package:\n%s", c, log2)
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
	info := &realize.BuildInfo{Inputs: map[string]realize.InputInfo{"gostd": {Path: "/heph/store/x-files", Builder: builtins.FetchFile}}}
	if err := seedGoCache(info, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "is not a builtin:go-std-cache output") {
		t.Errorf("seedGoCache of a fetch-file input: %v", err)
	}
}
