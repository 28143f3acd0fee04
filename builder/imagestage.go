package builder

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"hephc.dev/hephc/realize"
)

// What a u-root initramfs holds besides u-root's own files: the programs
// of its packages, attrs.files, and the files heph's init and self-test
// read (/etc/heph/services.json, programs.json, console.json), gathered
// by stageImage for uroot.

// staged is what goes into an image besides u-root's own files.
type staged struct {
	img      *imageTree
	packages []Package
	uinit    string // what /bin/uinit runs, if anything
}

// stageImage gathers the programs of the init and bin inputs, the files of
// attrs.files (written below dir) and the files for heph's init and
// self-test.
func stageImage(info *realize.BuildInfo, files map[string]imageFile, services map[string]imageService, console imageConsole, dir string) (*staged, error) {
	st := &staged{img: newImageTree()}
	var programs []imageProgram
	pkgInputs := inputsWithPrefix(info, "bin.")
	_, hasInit := info.Inputs["init"]
	if hasInit {
		pkgInputs = append([]string{"init"}, pkgInputs...)
	}
	for _, name := range pkgInputs {
		pkg, progs, err := addPrograms(st.img, name, info.Inputs[name])
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", name, err)
		}
		st.packages = append(st.packages, pkg)
		programs = append(programs, progs...)
	}
	if _, ok := st.img.files[uinitProgram]; ok {
		st.uinit = "/" + uinitProgram
	} else if hasInit {
		return nil, fmt.Errorf("input init has no %s", uinitProgram)
	} else if len(services) > 0 {
		return nil, fmt.Errorf("attrs.services: nothing would start them: want input init (heph's init, with %s)", uinitProgram)
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		host := filepath.Join(dir, p)
		if err := writeImageFile(host, []byte(files[p].Content), files[p].Mode); err != nil {
			return nil, fmt.Errorf("attrs.files: %w", err)
		}
		if err := st.img.add(p, host, "attrs.files"); err != nil {
			return nil, err
		}
	}
	sort.Slice(programs, func(i, j int) bool { return programs[i].Path < programs[j].Path })
	for _, gen := range []struct {
		path string
		v    any
	}{{imageServicesFile, services}, {imageProgramsFile, programs}, {imageConsoleFile, console}} {
		b, err := json.MarshalIndent(gen.v, "", "  ")
		if err != nil {
			return nil, err
		}
		host := filepath.Join(dir, gen.path)
		if err := writeImageFile(host, append(b, '\n'), 0o444); err != nil {
			return nil, err
		}
		if err := st.img.add(gen.path, host, "hephc"); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// imageProgram is an entry of /etc/heph/programs.json.
type imageProgram struct {
	Path    string `json:"path"`
	Package string `json:"package"`
	Version string `json:"version,omitempty"`
}

// imageService is an entry of /etc/heph/services.json.
type imageService struct {
	Command string   `json:"command"`
	Args    []string `json:"args"`
	Restart string   `json:"restart"`
}

// imageConsole is /etc/heph/console.json: what heph's init does with the
// console (system/hephinit/internal/image.Console).
type imageConsole struct {
	Shell bool `json:"shell"`
}

// consoleShell decodes attrs.consoleShell, false when not set.
func consoleShell(attrs map[string]any) (bool, error) {
	switch v := attrs["consoleShell"].(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	default:
		return false, fmt.Errorf("attrs.consoleShell: want a bool, got %v", v)
	}
}

// imageFile is an entry of attrs.files.
type imageFile struct {
	Content string
	Mode    os.FileMode
}

// imageTree is what goes into the image besides u-root's own files.
type imageTree struct {
	files map[string]imageEntry // by path relative to the image's root
}

type imageEntry struct{ host, from string }

func newImageTree() *imageTree { return &imageTree{files: map[string]imageEntry{}} }

// reserved are the paths u-root makes itself.
var reserved = map[string]bool{"init": true, "bin/uinit": true, "bin/sh": true, "bin/defaultsh": true, "etc/uinit.flags": true}

// add puts the host file at dest (an absolute path in the image, or
// relative to its root); from says where it comes from, for errors.
func (t *imageTree) add(dest, host, from string) error {
	rel := strings.TrimPrefix(path.Clean("/"+dest), "/")
	if rel == "" || reserved[rel] || rel == "bbin" || strings.HasPrefix(rel, "bbin/") {
		return fmt.Errorf("%s: /%s is u-root's", from, rel)
	}
	if prev, dup := t.files[rel]; dup {
		return fmt.Errorf("/%s comes from both %s and %s", rel, prev.from, from)
	}
	t.files[rel] = imageEntry{host: host, from: from}
	return nil
}

func (t *imageTree) sorted() []string { return slices.Sorted(maps.Keys(t.files)) }

// addPrograms puts the programs of a package input (its bin/*) into the
// image's /bin.
func addPrograms(img *imageTree, name string, in realize.InputInfo) (Package, []imageProgram, error) {
	pkg, err := describePackage(in)
	if err != nil {
		return pkg, nil, err
	}
	entries, err := os.ReadDir(filepath.Join(in.Path, "bin"))
	if err != nil {
		return pkg, nil, fmt.Errorf("%s has no programs (bin/*): %w", in.Path, err)
	}
	var progs []imageProgram
	for _, e := range entries {
		dest := "bin/" + e.Name()
		if err := img.add(dest, filepath.Join(in.Path, "bin", e.Name()), "input "+name+" ("+in.Name+")"); err != nil {
			return pkg, nil, err
		}
		pkg.Files = append(pkg.Files, "/"+dest)
		progs = append(progs, imageProgram{Path: "/" + dest, Package: in.Name, Version: in.Version})
	}
	if len(progs) == 0 {
		return pkg, nil, fmt.Errorf("%s has no programs (bin/*)", in.Path)
	}
	return pkg, progs, nil
}

func writeImageFile(host string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(host, b, mode); err != nil {
		return err
	}
	return os.Chmod(host, mode) // whatever the umask
}

// imageFiles decodes attrs.files: {PATH: {content, mode}}.
func imageFiles(v any) (map[string]imageFile, error) {
	m, ok := v.(map[string]any)
	if v != nil && !ok {
		return nil, fmt.Errorf("want a struct of files by absolute path")
	}
	files := make(map[string]imageFile, len(m))
	for p, fv := range m {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("%q: want an absolute path", p)
		}
		f, _ := fv.(map[string]any)
		content, ok := f["content"].(string)
		if !ok {
			return nil, fmt.Errorf("%s: want content, a string", p)
		}
		mode := os.FileMode(0o644)
		if s, ok := f["mode"].(string); ok {
			n, err := strconv.ParseUint(s, 8, 32)
			if err != nil || n > 0o777 {
				return nil, fmt.Errorf("%s: mode %q is not an octal permission", p, s)
			}
			mode = os.FileMode(n)
		}
		files[p] = imageFile{Content: content, Mode: mode}
	}
	return files, nil
}

// imageServices decodes attrs.services: {NAME: {command, args, restart}}.
func imageServices(v any) (map[string]imageService, error) {
	m, ok := v.(map[string]any)
	if v != nil && !ok {
		return nil, fmt.Errorf("want a struct of services by name")
	}
	svcs := make(map[string]imageService, len(m))
	for name, sv := range m {
		s, _ := sv.(map[string]any)
		cmd, _ := s["command"].(string)
		if !strings.HasPrefix(cmd, "/") {
			return nil, fmt.Errorf("%s: command %q: want an absolute path", name, cmd)
		}
		args, err := stringList(s["args"])
		if err != nil {
			return nil, fmt.Errorf("%s: args: %w", name, err)
		}
		restart, _ := s["restart"].(string)
		switch restart {
		case "":
			restart = "on-failure"
		case "on-failure", "always", "never":
		default:
			return nil, fmt.Errorf("%s: unknown restart policy %q", name, restart)
		}
		svcs[name] = imageService{Command: cmd, Args: args, Restart: restart}
	}
	return svcs, nil
}
