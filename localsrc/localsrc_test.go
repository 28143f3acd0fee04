package localsrc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// tree makes files under root: "name" → content, "name/" a directory,
// "name@" → a symbolic link to content, "name*" an executable.
func tree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(filepath.Join(root, name), 0o755)
		case strings.HasSuffix(name, "@"):
			p := filepath.Join(root, strings.TrimSuffix(name, "@"))
			os.MkdirAll(filepath.Dir(p), 0o755)
			err = os.Symlink(content, p)
		default:
			mode := os.FileMode(0o644)
			if strings.HasSuffix(name, "*") {
				name, mode = strings.TrimSuffix(name, "*"), 0o755
			}
			p := filepath.Join(root, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			err = os.WriteFile(p, []byte(content), mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// list describes the tree at root in tree's notation, sorted.
func list(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, _ := d.Info()
		switch {
		case rel == ".":
		case d.IsDir():
			out = append(out, rel+"/ "+fi.Mode().Perm().String())
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out = append(out, rel+"@ "+l)
		default:
			b, _ := os.ReadFile(p)
			out = append(out, rel+" "+fi.Mode().Perm().String()+" "+string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func same(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestCopyTree(t *testing.T) {
	conf := t.TempDir()
	tree(t, conf, map[string]string{
		"src/main.go":      "package main",
		"src/run.sh*":      "#!/bin/sh",
		"src/empty/":       "",
		"src/link@":        "main.go",
		"src/outside@":     "/etc/passwd",
		"src/up@":          "../../elsewhere",
		"src/sub/deep.txt": "deep",
	})
	dst := filepath.Join(t.TempDir(), "out")
	st, err := Copy(conf, "src", Filter{}, dst, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Links inside a copied tree stay links, wherever they point.
	same(t, list(t, dst), []string{
		"empty/ -rwxr-xr-x",
		"link@ main.go",
		"main.go -rw-r--r-- package main",
		"outside@ /etc/passwd",
		"run.sh -rwxr-xr-x #!/bin/sh",
		"sub/ -rwxr-xr-x",
		"sub/deep.txt -rw-r--r-- deep",
		"up@ ../../elsewhere",
	})
	if st.Files != 6 || st.Bytes != int64(len("package main#!/bin/shdeep")) {
		t.Errorf("stats: got %+v", st)
	}
}

func TestCopyFile(t *testing.T) {
	conf := t.TempDir()
	tree(t, conf, map[string]string{"a/tool*": "#!tool"})
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := Copy(conf, "a/tool", Filter{}, dst, 0); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dst)
	if err != nil || fi.Mode().Perm() != 0o755 || !fi.Mode().IsRegular() {
		t.Errorf("got %v, %v", fi.Mode(), err)
	}
}

// TestRefusesEscapes: the hostile cases. A secret outside the
// configuration's directory is reached through a link as the source
// itself, through a directory link on the way, through "..", through an
// absolute link, and through /proc's magic links; each is refused and
// nothing is copied.
func TestRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("root's secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := t.TempDir()
	tree(t, conf, map[string]string{
		"file-link@":  secret,
		"dir-link@":   outside,
		"rel-link@":   "../" + filepath.Base(outside) + "/secret",
		"abs-inside@": filepath.Join(conf, "real"),
		"real":        "inside",
		"proc@":       "/proc/self/root" + secret,
		"sub/up@":     "../..",
	})
	for _, rel := range []string{"file-link", "dir-link", "dir-link/secret", "rel-link", "abs-inside", "proc", "sub/up/" + filepath.Base(outside) + "/secret", "sub/up"} {
		dst := filepath.Join(t.TempDir(), "out")
		_, err := Copy(conf, rel, Filter{}, dst, 0)
		var ee *EscapeError
		if !errors.As(err, &ee) {
			t.Errorf("%s: got %v, want an *EscapeError", rel, err)
		} else if !strings.Contains(err.Error(), "leads outside "+conf) || !strings.Contains(err.Error(), rel) {
			t.Errorf("%s: message %q should name the path and the directory", rel, err)
		}
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: something was copied to %s", rel, dst)
		}
	}
}

func TestFollowsLinksThatStayInside(t *testing.T) {
	conf := t.TempDir()
	tree(t, conf, map[string]string{"real/f": "x", "alias@": "real", "dirs/a/link@": "../../real"})
	for _, rel := range []string{"alias", "dirs/a/link", "alias/f"} {
		dst := filepath.Join(t.TempDir(), "out")
		if _, err := Copy(conf, rel, Filter{}, dst, 0); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
	}
}

func TestRefusesSpecialFiles(t *testing.T) {
	conf := t.TempDir()
	tree(t, conf, map[string]string{"dir/ok": "ok"})
	if err := syscall.Mkfifo(filepath.Join(conf, "dir", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"dir", "dir/fifo"} {
		dst := filepath.Join(t.TempDir(), "out")
		_, err := Copy(conf, rel, Filter{}, dst, 0)
		if err == nil || !strings.Contains(err.Error(), "fifo") {
			t.Errorf("%s: got %v, want the FIFO refused", rel, err)
		}
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a partial copy was left at %s", rel, dst)
		}
	}
}

func TestRefusesPathsThatAreNotBeneath(t *testing.T) {
	conf := t.TempDir()
	for _, rel := range []string{"../x", "/etc", "", "a/../../b"} {
		if _, err := Copy(conf, rel, Filter{}, filepath.Join(t.TempDir(), "out"), 0); err == nil {
			t.Errorf("%q: got no error", rel)
		}
	}
}

func TestMaxBytes(t *testing.T) {
	conf := t.TempDir()
	tree(t, conf, map[string]string{"d/a": strings.Repeat("a", 600), "d/b": strings.Repeat("b", 600)})
	dst := filepath.Join(t.TempDir(), "out")
	_, err := Copy(conf, "d", Filter{}, dst, 1000)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1000 bytes") {
		t.Errorf("got %v, want ErrTooLarge naming the limit", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the partial copy was left")
	}
	if _, err := Copy(conf, "d", Filter{}, filepath.Join(t.TempDir(), "out"), 1200); err != nil {
		t.Errorf("at the limit: %v", err)
	}
}

func TestFilter(t *testing.T) {
	conf := t.TempDir()
	tree(t, conf, map[string]string{
		"src/go.mod":            "m",
		"src/main.go":           "main",
		"src/main_test.go":      "test",
		"src/cmd/a/main.go":     "a",
		"src/cmd/a/a_test.go":   "at",
		"src/cmd/b/main.go":     "b",
		"src/docs/x.md":         "doc",
		"src/testdata/in.txt":   "td",
		"src/testdata/empty/":   "",
		"src/internal/x/x.go":   "x",
		"src/internal/x/README": "r",
	})
	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{Exclude: []string{"docs", "**/*_test.go", "testdata"}}, []string{
			"cmd/", "cmd/a/", "cmd/a/main.go", "cmd/b/", "cmd/b/main.go", "go.mod", "internal/", "internal/x/",
			"internal/x/README", "internal/x/x.go", "main.go"}},
		{Filter{Include: []string{"**/*.go", "go.mod"}, Exclude: []string{"**/*_test.go"}}, []string{
			"cmd/", "cmd/a/", "cmd/a/main.go", "cmd/b/", "cmd/b/main.go", "go.mod", "internal/", "internal/x/",
			"internal/x/x.go", "main.go"}},
		{Filter{Include: []string{"cmd/*/main.go"}}, []string{"cmd/", "cmd/a/", "cmd/a/main.go", "cmd/b/", "cmd/b/main.go"}},
		{Filter{Include: []string{"testdata"}}, []string{"testdata/", "testdata/empty/", "testdata/in.txt"}},
		{Filter{Include: []string{"docs/"}, Exclude: []string{"docs/*.md"}}, []string{"docs/"}},
		{Filter{Include: []string{"nothing"}}, nil},
	} {
		dst := filepath.Join(t.TempDir(), "out")
		if _, err := Copy(conf, "src", tc.f, dst, 0); err != nil {
			t.Fatalf("%+v: %v", tc.f, err)
		}
		var got []string
		for _, l := range list(t, dst) {
			name, _, _ := strings.Cut(l, " ")
			got = append(got, name)
		}
		t.Run(strings.Join(append(tc.f.Include, tc.f.Exclude...), ","), func(t *testing.T) { same(t, got, tc.want) })
	}
}

func TestFilterNeedsADirectory(t *testing.T) {
	conf := t.TempDir()
	tree(t, conf, map[string]string{"f": "x"})
	_, err := Copy(conf, "f", Filter{Exclude: []string{"x"}}, filepath.Join(t.TempDir(), "out"), 0)
	if err == nil || !strings.Contains(err.Error(), "part of a directory") {
		t.Errorf("got %v", err)
	}
}

func TestBadPatterns(t *testing.T) {
	for _, p := range []string{"", "/abs", "a/../b", "./a", "a//b", "[", "a/[z-a"} {
		if err := (Filter{Include: []string{p}}).Check(); err == nil {
			t.Errorf("include %q: got no error", p)
		}
		if err := (Filter{Exclude: []string{p}}).Check(); err == nil {
			t.Errorf("exclude %q: got no error", p)
		}
	}
	if err := (Filter{Include: []string{"**", "a/**/b", "*.go", "dir/"}}).Check(); err != nil {
		t.Error(err)
	}
}
