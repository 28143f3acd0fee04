// Package builtins is the one table of hephc's built-in builders: their
// names (a derivation's builder is "builtin:" + a name), the schema
// definition each is written with, the policy kind that constrains it, and
// the attrs it reads and the fields those are made from. It is a leaf: it
// imports nothing of hephc and no CUE, so the store, the builders, eval,
// policy and the generation diff may all use it.
package builtins

import "strings"

// Prefix starts every built-in builder's name in a derivation.
const Prefix = "builtin:"

// The built-in builders, as a derivation's builder field spells them.
const (
	FetchGoMod      = Prefix + "fetch-gomod"
	FetchFile       = Prefix + "fetch-file"
	FetchGoModGraph = Prefix + "fetch-gomod-graph"
	GoBuild         = Prefix + "go-build"
	UrootBusybox    = Prefix + "uroot-busybox"
	Uroot           = Prefix + "uroot"
	SystemToplevel  = Prefix + "system-toplevel"
	GoTest          = Prefix + "go-test"
	RunTest         = Prefix + "run-test"
	FetchDeb        = Prefix + "fetch-deb"
	DiskImage       = Prefix + "disk-image"
	GoStdCache      = Prefix + "go-std-cache"
	// ImageTest is an image's test (an #Image's tests): it names no
	// sandbox builtin, for it runs on the host, in QEMU (imagetest).
	ImageTest = Prefix + "image-test"
)

// Derived is one attr a builder reads and the field of its schema
// definition that attr is made from (#Initramfs: attrs.services is services).
type Derived struct{ Attr, Field string }

// Builder describes one built-in builder.
type Builder struct {
	Name       string    // e.g. "builtin:go-build"
	Definition string    // the schema definition that writes it, e.g. "#GoProgram"
	PolicyKind string    // its field under a policy's every, e.g. "goProgram"
	Derived    []Derived // attrs read by the builder, made from the definition's fields
}

// Short is the name without its prefix, as the sandbox registers it.
func (b Builder) Short() string { return strings.TrimPrefix(b.Name, Prefix) }

// All lists the built-in builders in the schema's order.
var All = []Builder{
	{FetchDeb, "#DebianPackage", "debianPackage", []Derived{{"package", "name"}, {"version", "version"}, {"architecture", "architecture"}, {"sha256", "sha256"}, {"source", "source"}, {"component", "component"}}},
	{DiskImage, "#DiskImage", "diskImage", []Derived{{"espMiB", "espMiB"}, {"dataMiB", "dataMiB"}, {"tries", "tries"}, {"loaderFile", "loaderFile"}}},
	{FetchGoMod, "#GoModule", "goModule", []Derived{{"module", "path"}, {"version", "version"}}},
	{FetchFile, "#LocalFile", "localFile", []Derived{{"file", "file"}}},
	{FetchGoModGraph, "#GoModFiles", "goModFiles", nil},
	{GoBuild, "#GoProgram", "goProgram", []Derived{{"packages", "packages"}, {"ldflags", "ldflags"}}},
	{GoStdCache, "#GoStdCache", "goStdCache", []Derived{{"goos", "goos"}, {"goarch", "goarch"}, {"cgo", "cgo"}, {"flags", "flags"}, {"vet", "vet"}}},
	{UrootBusybox, "#Busybox", "busybox", []Derived{{"commands", "commands"}, {"tags", "tags"}}},
	{Uroot, "#Initramfs", "initramfs", []Derived{{"consoleShell", "consoleShell"}, {"files", "files"}, {"services", "services"}}},
	{SystemToplevel, "#Image", "image", []Derived{{"cmdline", "cmdline"}, {"consoleShell", "consoleShell"}, {"kernelFile", "kernelFile"}}},
	{GoTest, "#GoTest", "goTest", []Derived{{"packages", "packages"}, {"run", "run"}, {"skip", "skip"}}},
	{RunTest, "#Test", "test", []Derived{{"program", "program"}, {"args", "arguments"}}},
}

// Lookup returns the built-in builder called name ("builtin:…").
func Lookup(name string) (Builder, bool) {
	for _, b := range All {
		if b.Name == name {
			return b, true
		}
	}
	return Builder{}, false
}

// IsBuiltin says whether builder names a built-in builder (known or not).
func IsBuiltin(builder string) bool { return strings.HasPrefix(builder, Prefix) }

// Short returns builder without its prefix, and whether it had one.
func Short(builder string) (string, bool) { return strings.CutPrefix(builder, Prefix) }
