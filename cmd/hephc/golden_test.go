package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected output of golden cases")

// TestGolden runs every testdata/golden/*.txtar case: the archive's files
// are written to a fresh directory, hephc runs there with the arguments in
// the file "args" (default: eval --json, or eval when the case expects a
// failure, whose diagnostics are text), and its exit code, stdout and
// stderr must equal the sections out/exit, out/stdout and out/stderr.
// With -update (or HEPHC_UPDATE=1) the sections are rewritten instead.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("../../testdata/golden/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases found")
	}
	updating := *update || os.Getenv("HEPHC_UPDATE") == "1"
	for _, file := range cases {
		name := strings.TrimSuffix(filepath.Base(file), ".txtar")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			args := []string{"eval", "--json"}
			for _, f := range ar.Files {
				if f.Name == "out/exit" && string(f.Data) != "0\n" {
					args = []string{"eval"} // diagnostics as text (--json says them as JSON)
				}
			}
			var kept []txtar.File
			for _, f := range ar.Files {
				switch {
				case strings.HasPrefix(f.Name, "out/"):
					continue
				case f.Name == "args":
					args = strings.Fields(string(f.Data))
				default:
					p := filepath.Join(dir, filepath.FromSlash(f.Name))
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, f.Data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				kept = append(kept, f)
			}
			var stdout, stderr bytes.Buffer
			cache := t.TempDir()
			e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: func(k string) string {
				if k == "HEPHC_CACHE" {
					return cache
				}
				return ""
			}}
			code := run(e, args)
			got := map[string]string{
				"out/exit":   strconv.Itoa(code) + "\n",
				"out/stdout": stdout.String(),
				"out/stderr": stderr.String(),
			}
			if updating {
				for _, sec := range []string{"out/exit", "out/stdout", "out/stderr"} {
					if got[sec] != "" {
						kept = append(kept, txtar.File{Name: sec, Data: []byte(got[sec])})
					}
				}
				ar.Files = kept
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := map[string]string{}
			for _, f := range ar.Files {
				if strings.HasPrefix(f.Name, "out/") {
					want[f.Name] = string(f.Data)
				}
			}
			for _, sec := range []string{"out/exit", "out/stdout", "out/stderr"} {
				if got[sec] != want[sec] {
					t.Errorf("%s: got\n%s\nwant\n%s", sec, got[sec], want[sec])
				}
			}
		})
	}
}
