package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// readmeBlock is a fenced code block of README.md: its language and the
// line its text starts on.
type readmeBlock struct {
	lang string
	line int
	text string
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			if cur == nil {
				cur = &readmeBlock{lang: strings.TrimPrefix(line, "```"), line: n + 1}
			} else {
				blocks = append(blocks, *cur)
				cur = nil
			}
			continue
		}
		if cur != nil {
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: code block not closed", cur.line-1)
	}
	return blocks
}

// readmeCommand is one hephc command line of README.md's code blocks.
type readmeCommand struct {
	line int
	args []string // after "hephc"
	text string
}

// placeholder matches the words of a synopsis that stand for a value:
// N, NAME, PKG@VERSION, [--to N], a…
var placeholder = regexp.MustCompile(`^\[|\]$|…|^[A-Z][A-Z0-9_./@:-]*$`)

// readmeCommands finds every line that runs hephc, as `go run
// ./cmd/hephc …`, `hephc …` or `$ hephc …`; a comment, a pipe or a
// command substitution ends it.
func readmeCommands(t *testing.T) []readmeCommand {
	var cmds []readmeCommand
	for _, b := range readmeBlocks(t) {
		if b.lang != "" && b.lang != "sh" && b.lang != "console" {
			continue
		}
		for i, line := range strings.Split(b.text, "\n") {
			line = strings.TrimPrefix(strings.TrimSpace(line), "$ ")
			var rest string
			switch {
			case strings.HasPrefix(line, "go run ./cmd/hephc "):
				rest = strings.TrimPrefix(line, "go run ./cmd/hephc ")
			case strings.HasPrefix(line, "hephc "):
				rest = strings.TrimPrefix(line, "hephc ")
			default:
				continue
			}
			if k := strings.Index(rest, " #"); k >= 0 {
				rest = rest[:k]
			}
			var args []string
			for _, f := range shellWords(rest) {
				if strings.HasPrefix(f, "$(") || f == "|" || f == ">" || f == "&&" {
					break
				}
				args = append(args, f)
			}
			cmds = append(cmds, readmeCommand{line: b.line + i, args: args, text: line})
		}
	}
	return cmds
}

// shellWords splits a line as sh does for words without expansions:
// quotes group, a backslash escapes.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// TestReadmeCommands checks that every hephc command README.md shows
// exists and that its flags parse as written (a synopsis's placeholders
// aside: there each flag must exist).
func TestReadmeCommands(t *testing.T) {
	cmds := readmeCommands(t)
	if len(cmds) < 40 {
		t.Fatalf("found %d hephc commands in README.md; the parser lost some", len(cmds))
	}
	for _, rc := range cmds {
		if len(rc.args) == 0 {
			continue
		}
		args := rc.args
		if args[0] == "--help" || args[0] == "-h" {
			continue
		}
		global := pflag.NewFlagSet("hephc", pflag.ContinueOnError)
		global.SetInterspersed(false)
		global.SetOutput(io.Discard)
		global.String("store", "", "")
		if err := global.Parse(args); err != nil {
			t.Errorf("README.md:%d: %s: %v", rc.line, rc.text, err)
			continue
		}
		args = global.Args()
		cmd := lookupCommand(args[0])
		if cmd == nil {
			t.Errorf("README.md:%d: %s: no command %q", rc.line, rc.text, args[0])
			continue
		}
		fs := pflag.NewFlagSet("hephc "+cmd.name, pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		if cmd.flags != nil {
			cmd.flags(fs)
		}
		synopsis := false
		var plain []string
		for _, a := range args[1:] {
			if placeholder.MatchString(a) {
				synopsis = true
			}
			plain = append(plain, strings.Trim(a, "[]"))
		}
		err := fs.Parse(plain)
		if err == nil {
			continue
		}
		if !synopsis {
			t.Errorf("README.md:%d: %s: %v", rc.line, rc.text, err)
			continue
		}
		// A synopsis: each flag it names must exist.
		for _, a := range plain {
			if !strings.HasPrefix(a, "-") || a == "-" {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			var f *pflag.Flag
			if strings.HasPrefix(a, "--") {
				f = fs.Lookup(name)
			} else {
				f = fs.ShorthandLookup(name[:1])
			}
			if f == nil {
				t.Errorf("README.md:%d: %s: hephc %s has no flag %s", rc.line, rc.text, cmd.name, a)
			}
		}
	}
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// TestReadmeRuns runs README.md's commands that only read the
// configuration (eval, check, show-derivation, realize --dry-run) on
// the repository's own files, with an empty store: each must succeed.
func TestReadmeRuns(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	ran := 0
	for _, rc := range readmeCommands(t) {
		if !readOnlyCommand(rc.args) {
			continue
		}
		missing := false
		for _, a := range rc.args[1:] {
			if placeholder.MatchString(a) {
				missing = true
			}
			if strings.HasSuffix(a, ".cue") {
				if _, err := os.Stat(filepath.Join(repo, a)); err != nil {
					missing = true
				}
			}
		}
		if missing {
			continue
		}
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: func(k string) string {
			switch k {
			case "HEPHC_STORE":
				return store
			case "HEPHC_CACHE":
				return filepath.Join(store, "cache")
			}
			return os.Getenv(k)
		}}
		if code := run(e, rc.args); code != 0 {
			t.Errorf("README.md:%d: %s: exit %d\n%s", rc.line, rc.text, code, stderr.String())
		}
		ran++
	}
	if ran < 5 {
		t.Fatalf("ran %d of README.md's commands; want at least 5", ran)
	}
}

func readOnlyCommand(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "eval", "check", "show-derivation":
		return true
	case "realize":
		for _, a := range args {
			if a == "--dry-run" {
				return true
			}
		}
	}
	return false
}

// TestReadmeCUE evaluates README.md's CUE examples: a configuration
// (package system) as hephc eval does, with the schema.
func TestReadmeCUE(t *testing.T) {
	n := 0
	for _, b := range readmeBlocks(t) {
		if b.lang != "cue" {
			continue
		}
		n++
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "example.cue"), []byte(b.text), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"eval", "example.cue"}
		if !strings.HasPrefix(b.text, "package system") {
			// A policy of its own package: checked against an empty system.
			if err := os.WriteFile(filepath.Join(dir, "system.cue"), []byte("package system\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			args = []string{"check", "--policy", "example.cue", "system.cue"}
		}
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, cwd: dir, getenv: func(k string) string {
			if k == "HEPHC_STORE" || k == "HEPHC_CACHE" {
				return filepath.Join(dir, ".store")
			}
			return os.Getenv(k)
		}}
		if code := run(e, args); code != 0 {
			t.Errorf("README.md:%d: the CUE example does not evaluate (hephc %s): exit %d\n%s", b.line, strings.Join(args, " "), code, stderr.String())
		}
	}
	if n == 0 {
		t.Fatal("no CUE examples in README.md")
	}
}
