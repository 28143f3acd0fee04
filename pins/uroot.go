package pins

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// BBMain is the package gobusybox compiles u-root's commands into one
// program with.
const BBMain = "github.com/u-root/gobusybox/src/pkg/bb/bbmain"

// BusyboxPackages returns the packages a #Busybox compiles in the u-root
// module mod (extracted at dir) with the deps of the program it shares
// them with: its commands — templates of the module's .mkuimage.yaml such
// as "core", or package patterns — each a directory relative to the
// module ("./cmds/core/ls"), and gobusybox's bbmain.
func BusyboxPackages(dir, mod string, commands []string) ([]string, error) {
	templates, err := readTemplates(filepath.Join(dir, ".mkuimage.yaml"))
	if err != nil {
		return nil, err
	}
	var include, exclude []string
	for _, cmd := range commands {
		patterns, ok := templates[cmd]
		if !ok {
			patterns = []string{cmd}
		}
		for _, p := range patterns {
			if rest, ok := strings.CutPrefix(p, "-"); ok {
				exclude = append(exclude, rest)
			} else {
				include = append(include, p)
			}
		}
	}
	var pkgs []string
	for _, p := range include {
		matched, err := expand(dir, mod, p)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, matched...)
	}
	for _, p := range exclude {
		matched, err := expand(dir, mod, p)
		if err != nil {
			return nil, err
		}
		pkgs = slices.DeleteFunc(pkgs, func(x string) bool { return slices.Contains(matched, x) })
	}
	slices.Sort(pkgs)
	return append(slices.Compact(pkgs), BBMain), nil
}

// readTemplates reads the command templates of a .mkuimage.yaml (none
// when there is no such file).
func readTemplates(file string) (map[string][]string, error) {
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var y struct {
		Commands map[string][]string `yaml:"commands"`
	}
	if err := yaml.Unmarshal(b, &y); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return y.Commands, nil
}

// expand turns one package pattern (an import path, possibly with glob
// characters in the module mod) into the directories it matches that
// hold Go files, relative to the module.
func expand(dir, mod, pattern string) ([]string, error) {
	rel, ok := strings.CutPrefix(pattern, mod+"/")
	if !ok {
		if strings.ContainsAny(pattern, "*?[") {
			return nil, fmt.Errorf("command pattern %s: globs outside %s are not supported", pattern, mod)
		}
		return []string{pattern}, nil
	}
	if !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("command pattern %s leaves the module", pattern)
	}
	dirs, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, fmt.Errorf("command pattern %s: %w", pattern, err)
	}
	var out []string
	for _, d := range dirs {
		if hasGoFiles(d) {
			r, err := filepath.Rel(dir, d)
			if err != nil {
				return nil, err
			}
			out = append(out, "./"+filepath.ToSlash(r))
		}
	}
	return out, nil
}

// hasGoFiles reports whether a directory holds a .go file that is not a
// test.
func hasGoFiles(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			return true
		}
	}
	return false
}
