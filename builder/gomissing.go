package builder

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/mod/module"

	"hephc.dev/hephc/realize"
)

// goStderr keeps the last bytes the go command writes to its stderr (the
// build log has all of them), for missingModules to read after a failure.
type goStderr struct{ buf []byte }

// goStderrKeep bounds goStderr: the lines that name missing modules come
// at the end, after any compiler output.
const goStderrKeep = 64 << 10

func (w *goStderr) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - goStderrKeep; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

var (
	// go: downloading golang.org/x/sys v0.30.0
	goDownloading = regexp.MustCompile(`(?m)^go: downloading (\S+) (v\S+)$`)
	// go: golang.org/x/sys@v0.30.0: module lookup disabled by GOPROXY=off
	// (also after a file position, or as "reading …/@v/….mod: …")
	goLookupDisabled = regexp.MustCompile(`(?m)(?:^|\s)([^\s:@]+)@(v[^\s:]+): .*disabled by GOPROXY=off`)
)

// missingModules returns the modules the go command's output says it
// wanted and could not fetch (the build is offline, GOPROXY=off), sorted:
// those named by "go: downloading M V" and "M@V: module lookup disabled
// by GOPROXY=off" lines. It returns nil unless the output says a lookup
// was disabled: a module downloaded otherwise is not missing.
func missingModules(out []byte) []module.Version {
	if !bytes.Contains(out, []byte("disabled by GOPROXY=off")) {
		return nil
	}
	var mods []module.Version
	for _, re := range []*regexp.Regexp{goDownloading, goLookupDisabled} {
		for _, m := range re.FindAllSubmatch(out, -1) {
			mods = append(mods, module.Version{Path: string(m[1]), Version: string(m[2])})
		}
	}
	slices.SortFunc(mods, func(a, b module.Version) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
	return slices.Compact(mods)
}

// goBuildFailed is the error of a go build that failed with err: when
// the go command's stderr says it needed modules the build's inputs do
// not have, which ones, what the inputs have of them instead, and the
// command that pins them.
func goBuildFailed(info *realize.BuildInfo, stderr *goStderr, err error) error {
	mods := missingModules(stderr.buf)
	if len(mods) == 0 {
		return fmt.Errorf("go build: %w", err)
	}
	have := make(map[string][]string) // module path -> versions the deps.N inputs pin
	for _, name := range inputsWithPrefix(info, "deps.") {
		in := info.Inputs[name]
		if p, _ := in.Attrs["module"].(string); p != "" {
			v, _ := in.Attrs["version"].(string)
			have[p] = append(have[p], v)
		}
	}
	var b strings.Builder
	d := info.Derivation
	what := "a module"
	if len(mods) > 1 {
		what = "modules"
	}
	fmt.Fprintf(&b, "%s needs %s its inputs.deps do not have: ", strings.TrimSpace(d.Name+" "+d.Version), what)
	for i, m := range mods {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", m.Path, m.Version)
		if vs := have[m.Path]; len(vs) > 0 {
			fmt.Fprintf(&b, " (they have %s)", strings.Join(vs, ", "))
		}
	}
	// As pins.CheckLock says for deps changed by hand: moving the main
	// module to its own version resolves the program's modules again.
	update := "hephc update"
	src := info.Inputs["src"]
	if p, _ := src.Attrs["module"].(string); p != "" {
		v, _ := src.Attrs["version"].(string)
		update += " " + p + "@" + v
	}
	fmt.Fprintf(&b, ": run `%s` to resolve the program's modules again with the pinned toolchain and pin what it needs (or pin each as a heph.#GoModule in its inputs.deps)", update)
	// On a line of its own, the last of the build log: the end of the
	// log is what a failed realize shows.
	return fmt.Errorf("go build: %w\n%s", err, b.String())
}
