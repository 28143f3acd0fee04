package builder

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/realize"
)

func init() { register(builtins.SystemToplevel, systemToplevel) }

// The files of a system toplevel (a builtins.SystemToplevel output).
const (
	ToplevelKernel   = "kernel"
	ToplevelInitrd   = "initrd"
	ToplevelCmdline  = "cmdline"
	ToplevelManifest = "manifest.json"
)

// Pin is one pinned source: a Go module (an h1: sum) or a file of the
// configuration, a tree of go.mod files… (a blake3 hash).
type Pin struct {
	Name    string `json:"name"`
	Module  string `json:"module,omitempty"`
	Version string `json:"version,omitempty"`
	File    string `json:"file,omitempty"`
	Hash    string `json:"hash"`
}

// Package is a store path in a system: what it is, where, its content hash
// (docs/derivation.md) and size, the files it puts into the image and the
// pins of its sources.
type Package struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Path        string   `json:"path,omitempty"`
	ContentHash string   `json:"contentHash,omitempty"`
	Size        int64    `json:"size,omitempty"`
	Files       []string `json:"files,omitempty"`
	Pins        []Pin    `json:"pins,omitempty"`
}

// InitramfsManifest is $out/manifest.json of a builtins.UrootBusybox or
// builtins.Uroot output: the u-root commands; for an initramfs, the
// packages whose programs it holds (the busybox among them, each with its
// own pins), the services, the files and whether the console has a shell
// (attrs.consoleShell); the u-root command that built
// it; and the pins of its own build (for a busybox u-root, its modules,
// the toolchain).
type InitramfsManifest struct {
	Name     string                  `json:"name"`
	Version  string                  `json:"version"`
	Commands []string                `json:"commands"`
	Packages []Package               `json:"packages,omitempty"`
	Services map[string]imageService `json:"services,omitempty"`
	Files    []string                `json:"files,omitempty"`
	// ConsoleShell is the #Image's consoleShell: a root shell on the
	// console.
	ConsoleShell bool     `json:"consoleShell,omitempty"`
	BuiltBy      *Package `json:"builtBy,omitempty"`
	Pins         []Pin    `json:"pins"`
}

// Manifest is a system toplevel's manifest.json: what generations diff.
type Manifest struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	System  string `json:"system"`
	Cmdline string `json:"cmdline"`
	// Kernel and Initrd are the store paths the toplevel's files come
	// from; Packages every package in the system, kernel and initramfs
	// included, sorted by name and path.
	Kernel   Package   `json:"kernel"`
	Initrd   Package   `json:"initrd"`
	Packages []Package `json:"packages"`
	// Commands are the u-root commands (templates or packages) of the
	// initramfs.
	Commands []string                `json:"commands"`
	Services map[string]imageService `json:"services"`
	Files    []string                `json:"files"`
	// ConsoleShell says whether the console has a root shell with no
	// login (the #Image's consoleShell).
	ConsoleShell bool `json:"consoleShell"`
	// Pins are every pinned source the system was built from, sorted.
	Pins []Pin `json:"pins"`
}

// systemToplevel assembles a bootable system from input kernel (a Go
// module holding the kernel image attrs.kernelFile, default vmlinuz) and
// input initrd (a builtins.Uroot output): $out/kernel and $out/initrd are
// copies, $out/cmdline is attrs.cmdline and a newline, and
// $out/manifest.json says what the system is made of. attrs.consoleShell,
// when set, must be the initramfs's.
func systemToplevel(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	kernel, ok := info.Inputs["kernel"]
	if !ok {
		return fmt.Errorf("system-toplevel: no input kernel (a module holding a kernel image)")
	}
	initrd, ok := info.Inputs["initrd"]
	if !ok {
		return fmt.Errorf("system-toplevel: no input initrd (the initramfs)")
	}
	kernelFile, _ := info.Derivation.Attrs["kernelFile"].(string)
	if kernelFile == "" {
		kernelFile = "vmlinuz"
	}
	if !filepath.IsLocal(kernelFile) {
		return fmt.Errorf("system-toplevel: attrs.kernelFile %q is not a path inside the kernel's module", kernelFile)
	}
	cmdline, _ := info.Derivation.Attrs["cmdline"].(string)
	if strings.ContainsAny(cmdline, "\n\x00") {
		return fmt.Errorf("system-toplevel: attrs.cmdline holds a newline or NUL")
	}

	var im InitramfsManifest
	if err := readJSON(filepath.Join(initrd.Path, InitramfsManifestFile), &im); err != nil {
		return fmt.Errorf("system-toplevel: input initrd is not an initramfs (a %s output): %w", builtins.Uroot, err)
	}
	if _, set := info.Derivation.Attrs["consoleShell"]; set {
		shell, err := consoleShell(info.Derivation.Attrs)
		if err != nil {
			return fmt.Errorf("system-toplevel: %w", err)
		}
		if shell != im.ConsoleShell {
			return fmt.Errorf("system-toplevel: attrs.consoleShell is %v, but input initrd's console shell is %v (an #Image sets its initramfs's)", shell, im.ConsoleShell)
		}
	}

	if err := os.Mkdir(info.Out, 0o755); err != nil {
		return err
	}
	if _, err := fstree.CopyFile(filepath.Join(kernel.Path, kernelFile), filepath.Join(info.Out, ToplevelKernel), false); err != nil {
		return fmt.Errorf("system-toplevel: the kernel: %w", err)
	}
	if _, err := fstree.CopyFile(filepath.Join(initrd.Path, InitramfsFile), filepath.Join(info.Out, ToplevelInitrd), false); err != nil {
		return fmt.Errorf("system-toplevel: the initramfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(info.Out, ToplevelCmdline), []byte(cmdline+"\n"), 0o444); err != nil {
		return err
	}

	kpkg, err := describePackage(kernel)
	if err != nil {
		return fmt.Errorf("system-toplevel: the kernel: %w", err)
	}
	kpkg.Files = []string{"/" + kernelFile}
	ipkg, err := describePackage(initrd)
	if err != nil {
		return fmt.Errorf("system-toplevel: the initramfs: %w", err)
	}
	ipkg.Files = []string{"/" + InitramfsFile}
	// Its own build's sources: those of the u-root command.
	ipkg.Pins = mergePins(ipkg.Pins, im.Pins)
	m := Manifest{
		Name:         info.Derivation.Name,
		Version:      info.Derivation.Version,
		System:       info.Derivation.System,
		Cmdline:      cmdline,
		Kernel:       kpkg,
		Initrd:       ipkg,
		Packages:     append([]Package{kpkg, ipkg}, im.Packages...),
		Commands:     im.Commands,
		Services:     im.Services,
		Files:        im.Files,
		ConsoleShell: im.ConsoleShell,
	}
	sort.SliceStable(m.Packages, func(i, j int) bool {
		a, b := m.Packages[i], m.Packages[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Path < b.Path
	})
	for _, p := range m.Packages {
		m.Pins = mergePins(m.Pins, p.Pins)
	}
	if m.Services == nil {
		m.Services = map[string]imageService{}
	}
	if m.Files == nil {
		m.Files = []string{}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(info.Out, ToplevelManifest), append(b, '\n'), 0o444); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "system %s: kernel %s (%s), initrd %s, %d packages, %d services, %d pins\n",
		m.Name, kernel.Name, kernelFile, initrd.Name, len(m.Packages), len(m.Services), len(m.Pins))
	return nil
}

// pinsOf returns the pins of the fixed-output inputs among inputs, sorted.
func pinsOf(inputs map[string]realize.InputInfo) []Pin {
	var pins []Pin
	for _, in := range inputs {
		if in.OutputHash == "" {
			continue
		}
		p := Pin{Name: in.Name, Hash: in.OutputHash}
		// What was fetched, as its fetcher reads it (attrs of other
		// builders say nothing of the source).
		switch in.Builder {
		case builtins.FetchGoMod:
			p.Module, _ = in.Attrs["module"].(string)
			p.Version, _ = in.Attrs["version"].(string)
		case builtins.FetchFile:
			p.File, _ = in.Attrs["file"].(string)
		}
		pins = append(pins, p)
	}
	return mergePins(nil, pins)
}

// mergePins returns the union of a and b, sorted, each pin once.
func mergePins(a, b []Pin) []Pin {
	seen := make(map[Pin]bool, len(a)+len(b))
	out := make([]Pin, 0, len(a)+len(b))
	for _, p := range append(append([]Pin(nil), a...), b...) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		switch {
		case x.Module != y.Module:
			return x.Module < y.Module
		case x.Version != y.Version:
			return x.Version < y.Version
		case x.File != y.File:
			return x.File < y.File
		case x.Name != y.Name:
			return x.Name < y.Name
		}
		return x.Hash < y.Hash
	})
	return out
}
