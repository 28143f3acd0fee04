// Package benchconfig writes the large configurations that evaluation
// benchmarks run on, and measures their peak memory.
package benchconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"hephc.dev/hephc/builtins"
)

// Builder is the packages' builder: a built-in name that no builder has,
// for configurations that are evaluated and never built.
const Builder = builtins.Prefix + "exec"

// Write writes n packages in the real schema to dir, 1,000 a file;
// package i depends on i-7, i-14, … (up to 5 earlier packages), the shape
// docs/design.md ("Measured traps") measured CUE alone on. Each declares a license.
func Write(tb testing.TB, dir string, n int) {
	tb.Helper()
	const perFile = 1000
	for f := 0; f*perFile < n; f++ {
		var b strings.Builder
		b.WriteString("package bench\n\nimport \"hephc.dev/heph\"\n\n")
		for i := f * perFile; i < n && i < (f+1)*perFile; i++ {
			fmt.Fprintf(&b, "pkgs: p%d: heph.#Derivation & {\n\tname: \"p%d\"\n\tversion: \"1.%d\"\n\tbuilder: %q\n\targs: [\"build\", \"%d\"]\n\tenv: N: \"%d\"\n\tmeta: license: \"MIT\"\n\tinputs: {", i, i, i, Builder, i, i)
			for k := 1; k <= 5 && i-7*k >= 0; k++ {
				fmt.Fprintf(&b, "d%d: pkgs.p%d, ", k, i-7*k)
			}
			b.WriteString("}\n}\n")
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("pkgs%03d.cue", f)), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// ResetPeakRSS makes the kernel forget the process's peak resident set
// size, so that ReportPeakRSS measures what follows.
func ResetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // Linux; harmless elsewhere
}

// ReportPeakRSS reports the process's peak resident set size since
// ResetPeakRSS, in MB (VmHWM of /proc/self/status).
func ReportPeakRSS(b *testing.B) {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err == nil {
				b.ReportMetric(float64(kb)/1024, "peak-MB")
			}
		}
	}
}
