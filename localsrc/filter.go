package localsrc

import (
	"fmt"
	"path"
	"strings"
)

// Filter chooses part of a directory tree, as Nix's lib.fileset does: a
// file is copied if an Include pattern matches it (or there are none) and
// no Exclude pattern does.
//
// A pattern is a slash-separated path relative to the source's root, each
// element a path.Match pattern ("*.go", "cmd", "[a-c]*"), or "**", which
// matches any number of elements, none included. A pattern matches a
// path if it matches the path itself or one of the directories it is in:
// "docs" is the directory docs and all it holds, "**/*_test.go" every
// test file, "cmd/*/main.go" each command's main file. Directories are
// created on the way to the files copied; an empty directory is copied if
// a pattern includes it. Symbolic links are files here.
type Filter struct {
	Include []string
	Exclude []string
}

// IsZero reports whether f chooses the whole tree.
func (f Filter) IsZero() bool { return len(f.Include) == 0 && len(f.Exclude) == 0 }

// compiled is a checked Filter.
type compiled struct{ include, exclude []pattern }

// pattern is a pattern's elements.
type pattern []string

func (f Filter) compile() (*compiled, error) {
	c := &compiled{}
	for _, s := range f.Include {
		p, err := parsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("include pattern %q: %w", s, err)
		}
		c.include = append(c.include, p)
	}
	for _, s := range f.Exclude {
		p, err := parsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", s, err)
		}
		c.exclude = append(c.exclude, p)
	}
	return c, nil
}

// Check reports a pattern that is not relative and clean, or not a valid
// path.Match pattern.
func (f Filter) Check() error {
	_, err := f.compile()
	return err
}

func parsePattern(s string) (pattern, error) {
	s = strings.TrimSuffix(s, "/")
	if s == "" {
		return nil, fmt.Errorf("empty")
	}
	if strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("not relative to the source")
	}
	p := pattern(strings.Split(s, "/"))
	for _, e := range p {
		switch e {
		case "", ".", "..":
			return nil, fmt.Errorf("element %q: a pattern is a clean path below the source", e)
		}
		if _, err := path.Match(e, ""); err != nil {
			return nil, fmt.Errorf("element %q: %w", e, err)
		}
	}
	return p, nil
}

// match reports whether p matches the path of elements e exactly.
func match(p pattern, e []string) bool {
	if len(p) == 0 {
		return len(e) == 0
	}
	if p[0] == "**" {
		for i := 0; i <= len(e); i++ {
			if match(p[1:], e[i:]) {
				return true
			}
		}
		return false
	}
	if len(e) == 0 {
		return false
	}
	ok, _ := path.Match(p[0], e[0])
	return ok && match(p[1:], e[1:])
}

// covers reports whether p matches e or a directory e is in.
func covers(p pattern, e []string) bool {
	for i := 1; i <= len(e); i++ {
		if match(p, e[:i]) {
			return true
		}
	}
	return false
}

// below reports whether p could match something inside the directory e.
func below(p pattern, e []string) bool {
	for i := 0; i < len(e); i++ {
		if i >= len(p) {
			return false
		}
		if p[i] == "**" {
			return true
		}
		if ok, _ := path.Match(p[i], e[i]); !ok {
			return false
		}
	}
	return len(p) > len(e)
}

// choice is what a Filter says of a path.
type choice int

const (
	skip    choice = iota // not copied, nor anything in it
	copyAll               // copied, with all it holds but what is excluded
	look                  // a directory that may hold what is included
)

// choose says what c makes of the path of elements e (a directory if dir).
func (c *compiled) choose(e []string, dir bool) choice {
	for _, p := range c.exclude {
		if covers(p, e) {
			return skip
		}
	}
	if len(c.include) == 0 {
		return copyAll
	}
	for _, p := range c.include {
		if covers(p, e) {
			return copyAll
		}
	}
	if dir {
		for _, p := range c.include {
			if below(p, e) {
				return look
			}
		}
	}
	return skip
}
