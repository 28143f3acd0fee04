// Package defs holds hephc's CUE schema, the package hephc.dev/heph that user
// files import.
package defs

import (
	"embed"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
)

// ImportPath is the path user files import the schema under.
const ImportPath = "hephc.dev/heph"

// ModulePath is the CUE module hephc gives a configuration directory that
// has no cue.mod of its own.
const ModulePath = "hephc.local/config"

// LanguageVersion is the CUE language version the schema is written for.
const LanguageVersion = "v0.17.1"

//go:embed *.cue
var files embed.FS

// Files returns the schema's files by base name, in a stable order of names.
func Files() map[string][]byte {
	m := make(map[string][]byte)
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(err) // embedded: cannot fail
	}
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			panic(err)
		}
		m[e.Name()] = b
	}
	return m
}

// Names returns the schema's file names, sorted.
func Names() []string {
	var names []string
	for n := range Files() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// IsSchemaFile reports whether filename is one of the schema's files as
// cue/load names it when hephc provides the schema (or `hephc init` wrote
// it): DIR/cue.mod/pkg/hephc.dev/heph/NAME.cue.
func IsSchemaFile(filename string) bool {
	return strings.Contains(filepath.ToSlash(filename), "/cue.mod/pkg/"+ImportPath+"/")
}
