package builder

import (
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/realize"
)

func TestImageTreeRefusesConflicts(t *testing.T) {
	img := newImageTree()
	if err := img.add("/bin/age", "/heph/store/a-age/bin/age", "input bin.age (age)"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ dest, want string }{
		{"bin/age", "/bin/age comes from both input bin.age (age) and attrs.files"},
		{"/bin/../bin/age", "/bin/age comes from both input bin.age (age) and attrs.files"},
		{"/init", "attrs.files: /init is u-root's"},
		{"/bin/uinit", "attrs.files: /bin/uinit is u-root's"},
		{"/bbin/ls", "attrs.files: /bbin/ls is u-root's"},
		{"/", "attrs.files: / is u-root's"},
	} {
		err := img.add(c.dest, "/build/image"+c.dest, "attrs.files")
		if err == nil || err.Error() != c.want {
			t.Errorf("add %q: got %v, want %q", c.dest, err, c.want)
		}
	}
	if got := img.sorted(); !reflect.DeepEqual(got, []string{"bin/age"}) {
		t.Errorf("got %v", got)
	}
}

func TestImageFilesAndServices(t *testing.T) {
	files, err := imageFiles(map[string]any{
		"/etc/hostname": map[string]any{"content": "ws\n", "mode": "0644"},
		"/bin/hello":    map[string]any{"content": "#!/bin/sh\n", "mode": "0755"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if f := files["/bin/hello"]; f.Mode != 0o755 || f.Content != "#!/bin/sh\n" {
		t.Errorf("got %+v", f)
	}
	for _, bad := range []map[string]any{
		{"etc/x": map[string]any{"content": ""}},
		{"/x": map[string]any{"content": "", "mode": "0999"}},
		{"/x": map[string]any{}},
	} {
		if _, err := imageFiles(bad); err == nil {
			t.Errorf("imageFiles(%v) succeeded", bad)
		}
	}

	svcs, err := imageServices(map[string]any{
		"selftest": map[string]any{"command": "/bin/selftest", "args": []any{}, "restart": "never"},
		"vpn":      map[string]any{"command": "/bin/wireguard", "args": []any{"-f", "wg0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]imageService{
		"selftest": {Command: "/bin/selftest", Args: []string{}, Restart: "never"},
		"vpn":      {Command: "/bin/wireguard", Args: []string{"-f", "wg0"}, Restart: "on-failure"},
	}
	if !reflect.DeepEqual(svcs, want) {
		t.Errorf("got %+v, want %+v", svcs, want)
	}
	if _, err := imageServices(map[string]any{"x": map[string]any{"command": "/x", "restart": "sometimes"}}); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Errorf("got %v, want the unknown policy named", err)
	}
}

func TestConsoleShellAttr(t *testing.T) {
	for _, c := range []struct {
		attrs map[string]any
		want  bool
	}{{map[string]any{}, false}, {map[string]any{"consoleShell": false}, false}, {map[string]any{"consoleShell": true}, true}} {
		if got, err := consoleShell(c.attrs); err != nil || got != c.want {
			t.Errorf("consoleShell(%v): got %v, %v; want %v", c.attrs, got, err, c.want)
		}
	}
	if _, err := consoleShell(map[string]any{"consoleShell": "yes"}); err == nil || !strings.Contains(err.Error(), "want a bool") {
		t.Errorf("a string: got %v, want an error asking for a bool", err)
	}
}

func TestInputsWithPrefixSortsNumerically(t *testing.T) {
	info := &realize.BuildInfo{Inputs: map[string]realize.InputInfo{"deps.10": {}, "deps.9": {}, "deps.0": {}, "src": {}, "bin.b": {}, "bin.a": {}}}
	if got := inputsWithPrefix(info, "deps."); !reflect.DeepEqual(got, []string{"deps.0", "deps.9", "deps.10"}) {
		t.Errorf("got %v", got)
	}
	if got := inputsWithPrefix(info, "bin."); !reflect.DeepEqual(got, []string{"bin.a", "bin.b"}) {
		t.Errorf("got %v", got)
	}
}

// TestHephinitPinIsCurrent: system.cue pins system/hephinit by its tree
// hash. A #LocalFile's store path depends on its pin alone, so after an
// edit a stale pin would silently keep building the old sources.
func TestHephinitPinIsCurrent(t *testing.T) {
	tree, err := fstree.HashTree("../system/hephinit", fstree.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile("../system.cue")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`file:\s+"system/hephinit"\s+hash:\s+"` + regexp.QuoteMeta(tree.Hash.String()) + `"`)
	if !want.Match(conf) {
		t.Errorf("system.cue does not pin system/hephinit by its current hash %s: set hephSrc.hash to it", tree.Hash)
	}
}

// TestHephinitModule runs the tests of system/hephinit, a module of its
// own that `go test ./...` does not reach.
func TestHephinitModule(t *testing.T) {
	cmd := exec.Command("go", "test", "-count=1", "./...")
	cmd.Dir = "../system/hephinit"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test ./... in system/hephinit: %v\n%s", err, out)
	}
}
