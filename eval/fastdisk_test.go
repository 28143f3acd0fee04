package eval

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zeebo/blake3"

	"hephc.dev/hephc/internal/benchconfig"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/store"
)

// readConfig reads the configuration in dir as Fast takes it.
func readConfig(t *testing.T, dir string) []File {
	t.Helper()
	_, names, ok := lang.NewLoader(dir).Simple(dir)
	if !ok {
		t.Fatal("not a simple configuration")
	}
	srcs, ok := lang.ReadSources(names)
	if !ok {
		t.Fatal("unreadable")
	}
	files := make([]File, len(srcs))
	for i, s := range srcs {
		files[i] = File{Name: s.Name, Sum: s.Sum, Src: s.Src}
	}
	return files
}

// newProcess evaluates files as a new process does with disk, and returns
// the graph and how many files it parsed.
func newProcess(t *testing.T, files []File, disk *FileCache) (*Graph, int) {
	t.Helper()
	f := &Fast{}
	g, ok := f.Build(files, Options{}, disk)
	if !ok {
		t.Fatal("the fast path refused the configuration")
	}
	return g, f.parsed
}

// TestFileCacheHostile damages, replaces and forges a FileCache's entries:
// each is a miss (the file parsed again, the entry written anew) and the
// graph is the one evaluated without a cache, never an error.
func TestFileCacheHostile(t *testing.T) {
	dir := t.TempDir()
	benchconfig.Write(t, dir, 1050) // two files, the second of 50 packages
	files := readConfig(t, dir)
	want, ok := (&Fast{}).Build(files, Options{}, nil)
	if !ok {
		t.Fatal("refused")
	}
	disk := &FileCache{Dir: t.TempDir(), Build: "test"}
	if _, parsed := newProcess(t, files, disk); parsed != 2 {
		t.Fatalf("parsed %d files with an empty cache, want 2", parsed)
	}
	a, b := disk.name(files[1].Name), disk.name(files[0].Name)
	good, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	// seal makes an entry of body with its checksum right: a forgery,
	// not damage.
	seal := func(fill func(e *encoder)) []byte {
		var e encoder
		e.str(disk.Build)
		e.str(files[1].Name)
		e.hash(files[1].Sum)
		fill(&e)
		return sealEntry(e.b)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	outside := filepath.Join(t.TempDir(), "entry")
	if err := os.WriteFile(outside, good, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() error{
		"truncated":   func() error { return os.WriteFile(a, good[:len(good)/2], 0o600) },
		"bit flipped": func() error { return os.WriteFile(a, flipped, 0o600) },
		"empty":       func() error { return os.WriteFile(a, nil, 0o600) },
		"another file's entry": func() error {
			return os.WriteFile(a, other, 0o600)
		},
		"another build's entry": func() error {
			return os.WriteFile(a, append([]byte(fileCacheFormat+"x"), good[len(fileCacheFormat)+1:]...), 0o600)
		},
		"a symbolic link out of the directory": func() error {
			os.Remove(a)
			return os.Symlink(outside, a)
		},
		"writable by others": func() error {
			if err := os.WriteFile(a, good, 0o600); err != nil {
				return err
			}
			return os.Chmod(a, 0o666)
		},
		"a directory": func() error {
			os.Remove(a)
			return os.Mkdir(a, 0o700)
		},
		"a huge count of declarations": func() error {
			return os.WriteFile(a, seal(func(e *encoder) {
				e.bool(true)
				e.str("bench")
				e.uint(1 << 62)
			}), 0o600)
		},
		"a huge string": func() error {
			return os.WriteFile(a, seal(func(e *encoder) {
				e.bool(true)
				e.uint(1 << 40)
			}), 0o600)
		},
		"a huge count of inputs' hashes": func() error {
			return os.WriteFile(a, seal(func(e *encoder) {
				e.bool(true)
				e.str("bench")
				e.uint(1)
				d := *want.Nodes[want.Roots["pkgs.p1000"]]
				e.decl(&fastDecl{path: []string{"pkgs", "p1000"}, drv: *d.Drv, linked: false})
				e.b = e.b[:len(e.b)-1] // linked: true, then a count
				e.bool(true)
				e.uint(1 << 50)
			}), 0o600)
		},
		"an input of no kind": func() error {
			return os.WriteFile(a, seal(func(e *encoder) {
				e.bool(true)
				e.str("bench")
				e.uint(1)
				d := &fastDecl{path: []string{"pkgs", "p1000"}, inputs: []fastInput{{label: "x", kind: 'z', refs: [][]string{{"pkgs", "p1"}}}}}
				e.decl(d)
			}), 0o600)
		},
		"trailing bytes": func() error {
			b := append([]byte(nil), good[len(fileCacheFormat)+32:]...)
			return os.WriteFile(a, sealEntry(append(b, 0)), 0o600)
		},
	}
	if os.Geteuid() == 0 {
		cases["another user's"] = func() error {
			if err := os.WriteFile(a, good, 0o600); err != nil {
				return err
			}
			return os.Chown(a, 1, 1)
		}
	}
	fresh := *disk
	fresh.Fresh = true
	if _, parsed := newProcess(t, files, &fresh); parsed != 2 {
		t.Errorf("Fresh: parsed %d files, want 2 (entries not read)", parsed)
	}
	for name, plant := range cases {
		if err := os.RemoveAll(a); err != nil {
			t.Fatal(err)
		}
		if err := plant(); err != nil {
			t.Fatal(err)
		}
		g, parsed := newProcess(t, files, disk)
		if parsed != 1 {
			t.Errorf("%s: parsed %d files, want 1 (a miss)", name, parsed)
		}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("%s: the graph is not the one evaluated without a cache", name)
		}
		if g, parsed := newProcess(t, files, disk); parsed != 0 || !reflect.DeepEqual(g, want) {
			t.Errorf("%s: the entry was not written anew (parsed %d)", name, parsed)
		}
	}
}

// sealEntry puts the format and checksum before an entry's body.
func sealEntry(body []byte) []byte {
	sum := blake3.Sum256(body)
	out := make([]byte, 0, len(fileCacheFormat)+32+len(body))
	out = append(out, fileCacheFormat...)
	out = append(out, sum[:]...)
	return append(out, body...)
}

// TestFileCacheBounded keeps a FileCache under a bound smaller than one
// configuration's entries: the graph stays right, the directory small.
func TestFileCacheBounded(t *testing.T) {
	dir := t.TempDir()
	benchconfig.Write(t, dir, 3100) // four files
	files := readConfig(t, dir)
	disk := &FileCache{Dir: t.TempDir(), Build: "test"}
	newProcess(t, files, disk)
	var total int64
	ents, _ := os.ReadDir(disk.Dir)
	for _, e := range ents {
		fi, _ := e.Info()
		total += fi.Size()
	}
	disk.MaxBytes = total / 2
	want, _ := newProcess(t, files, &FileCache{Dir: t.TempDir(), Build: "test"})
	edited := append([]File(nil), files...)
	edited[3].Sum[0] ^= 1 // as if edited: written again, and the directory pruned
	g, _ := newProcess(t, edited, disk)
	if !reflect.DeepEqual(g, want) {
		t.Fatal("the graph changed")
	}
	var after int64
	ents, _ = os.ReadDir(disk.Dir)
	for _, e := range ents {
		fi, _ := e.Info()
		after += fi.Size()
	}
	if after > disk.MaxBytes || len(ents) == 0 {
		t.Fatalf("%d bytes in %d entries after pruning to %d", after, len(ents), disk.MaxBytes)
	}
}

// TestFastHash holds fastHash to store.Derivation.Hash, on strings that
// need escaping, empty and several args, env and inputs, and what it
// leaves to Hash (fixed outputs, attrs, bad names, bad UTF-8).
func TestFastHash(t *testing.T) {
	h := func(b byte) store.DrvHash { return store.DrvHash{b} }
	for i, d := range []store.Derivation{
		{Name: "a", Builder: "builtin:exec", System: "x86_64-linux", Args: []string{}, Env: map[string]string{}, Inputs: map[string]store.DrvHash{}},
		{Name: "b+c_d?=e-1.2", Version: "1.\"2\"\\", Builder: "@{in.x}/bin/\x01b", System: "aarch64-linux",
			Args: []string{"é", "\t\n\x1f", "", "<>&\u2028"}, Env: map[string]string{"Z": "1", "A_b": "\"", "a": "\x7f"},
			Inputs: map[string]store.DrvHash{"in.x": h(1), "d": h(2), "l.0": h(3), "l.10": h(4), "l.2": h(5)}},
		{Name: "f", Builder: "builtin:fetch-url", OutputHash: "blake3:" + strings.Repeat("0", 64)},
		{Name: "g", Builder: "builtin:exec", Attrs: map[string]any{"x": int64(1)}},
		{Name: "..", Builder: "builtin:exec"},
		{Name: "u", Builder: "builtin:exec", Args: []string{"\xff"}},
	} {
		want, werr := d.Hash()
		got, err := fastHash(&d)
		if got != want || (err == nil) != (werr == nil) {
			t.Errorf("derivation %d: fastHash %v %v, Hash %v %v", i, got, err, want, werr)
		}
	}
}

// TestFileCacheConcurrent evaluates one configuration from several
// goroutines, each a new process or the same one, through one FileCache
// (run with -race).
func TestFileCacheConcurrent(t *testing.T) {
	dir := t.TempDir()
	benchconfig.Write(t, dir, 1200)
	files := readConfig(t, dir)
	want, _ := (&Fast{}).Build(files, Options{}, nil)
	disk := &FileCache{Dir: t.TempDir(), Build: "test"}
	shared := &Fast{}
	errs := make(chan string, 8)
	for i := range 8 {
		go func() {
			f := shared
			if i%2 == 0 {
				f = &Fast{}
			}
			g, ok := f.Build(files, Options{}, disk)
			if !ok || !reflect.DeepEqual(g, want) {
				errs <- "a graph that is not the one evaluated without a cache"
				return
			}
			errs <- ""
		}()
	}
	for range 8 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
