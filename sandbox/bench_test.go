package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRunBuild runs a static program that does nothing in a sandbox
// laid out as realize lays out a build (a writable $out directory and
// /build side by side, /.heph read-only beside them, an input below $out's
// directory, the default limits, the directories and the overlay's work
// directory kept from build to build as realize's pool keeps them): what
// a sandbox costs a build, without the store. Besides the wall time it
// reports the CPU time of this process and of its children (the inits and
// the program) per run.
func BenchmarkRunBuild(b *testing.B) {
	requireNamespaces(b)
	WaitInitHelper()
	dir := b.TempDir()
	prog := filepath.Join(dir, "store", "aaa-prog")
	cmd := exec.Command("go", "build", "-o", prog, "./testdata/static")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building the program: %v\n%s", err, out)
	}
	var self, children time.Duration
	times := make([]time.Duration, 0, b.N)
	n := 0
	tmp := filepath.Join(dir, "tmp", "build-pool", "u")
	work := filepath.Join(dir, "tmp", "build-pool", "w")
	for _, d := range []string{"store", "build", "heph", "../w"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		b.StopTimer()
		s0, c0 := rusage()
		start := time.Now()
		b.StartTimer()
		err := Run(context.Background(), &Spec{
			Program: "/heph/store/aaa-prog",
			Limits:  DefaultLimits,
			WorkDir: work,
			Mounts: []Mount{
				{Source: filepath.Join(tmp, "store"), Target: "/heph/store", Writable: true},
				{Source: filepath.Join(tmp, "build"), Target: "/build", Writable: true},
				{Source: filepath.Join(tmp, "heph"), Target: "/.heph"},
				{Source: prog, Target: "/heph/store/aaa-prog"},
			},
		})
		b.StopTimer()
		times = append(times, time.Since(start))
		s1, c1 := rusage()
		self, children, n = self+s1-s0, children+c1-c0, n+1
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(times[len(times)/2]), "median-ms")
	b.ReportMetric(ms(self+children)/float64(n), "cpu-ms/op")
	b.ReportMetric(ms(children)/float64(n), "children-cpu-ms/op")
}

// rusage returns the user and system time of this process and of its
// children that have been waited for.
func rusage() (self, children time.Duration) {
	var s, c syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	return time.Duration(s.Utime.Nano() + s.Stime.Nano()), time.Duration(c.Utime.Nano() + c.Stime.Nano())
}
