package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func init() {
	RegisterBuiltin("hog", hog)
	RegisterBuiltin("threads", threads)
	RegisterBuiltin("fill", fill)
	RegisterBuiltin("fill-many", fillMany)
}

// hog allocates and touches args[0] MiB of memory, 1 MiB at a time.
func hog(args, env []string, stdout, stderr io.Writer) error {
	n, _ := strconv.Atoi(args[0])
	var keep [][]byte
	for i := 0; i < n; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
		if i%64 == 0 {
			fmt.Fprintf(stdout, "hog: %d MiB\n", i)
		}
	}
	fmt.Fprintf(stdout, "hog: allocated %d MiB\n", len(keep))
	return nil
}

// threads starts args[0] threads, each sleeping: a fork bomb, bounded.
// The Go runtime dies when the kernel refuses a thread.
func threads(args, env []string, stdout, stderr io.Writer) error {
	n, _ := strconv.Atoi(args[0])
	for i := 0; i < n; i++ {
		go func() {
			runtime.LockOSThread()
			time.Sleep(time.Hour)
		}()
	}
	time.Sleep(time.Second)
	fmt.Fprintf(stdout, "threads: %d running\n", n)
	return nil
}

// fill writes args[1] MiB to the file args[0].
func fill(args, env []string, stdout, stderr io.Writer) error {
	n, _ := strconv.Atoi(args[1])
	f, err := os.Create(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	mib := bytes.Repeat([]byte{'x'}, 1<<20)
	for i := 0; i < n; i++ {
		if _, err := f.Write(mib); err != nil {
			return fmt.Errorf("after %d MiB: %w", i, err)
		}
	}
	return f.Close()
}

// fillMany writes args[1] files of 1 MiB in the directory args[0], slowly
// enough for the disk watcher to see it.
func fillMany(args, env []string, stdout, stderr io.Writer) error {
	n, _ := strconv.Atoi(args[1])
	mib := bytes.Repeat([]byte{'x'}, 1<<20)
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(args[0], strconv.Itoa(i)), mib, 0o644); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// runLimited runs builtin with args under lim and returns Run's error and
// the build's output.
func runLimited(t *testing.T, lim Limits, mounts []Mount, builtin string, args ...string) (error, string) {
	t.Helper()
	requireNamespaces(t)
	var out bytes.Buffer
	err := runT(t, context.Background(), &Spec{Builtin: builtin, Args: args, Limits: lim, Mounts: mounts,
		Timeout: 2 * time.Minute, Stdout: &out, Stderr: &out})
	return err, out.String()
}

// wantLimit checks that err is a *LimitError for limit whose message says
// so, and that it still tells how the build ended.
func wantLimit(t *testing.T, err error, log, limit, value string) {
	t.Helper()
	t.Logf("error: %v\nlog (end):\n%s", err, tailString(log, 600))
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want a *LimitError for the %s limit", err, limit)
	}
	want := fmt.Sprintf("the build exceeded its %s limit of %s", limit, value)
	if le.Limit != limit || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "raise") {
		t.Errorf("got %q, want it to say %q and how to raise it", err, want)
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// requireCgroup fails (skips, as an ordinary user outside CI) unless this
// machine gives builds a cgroup limiting what.
func requireCgroup(t *testing.T, what string) {
	t.Helper()
	h := cgroupHostOnce()
	if h.v2 != "" || (what == "memory" && h.memory != "") || (what == "pids" && h.pids != "") {
		return
	}
	msg := fmt.Sprintf("no writable cgroup with the %s controller (%+v)", what, h)
	if os.Getenv("HEPHC_E2E") == "1" || privileged() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func TestMemoryLimit(t *testing.T) {
	requireCgroup(t, "memory")
	err, log := runLimited(t, Limits{Memory: 64 << 20}, nil, "hog", "1024")
	wantLimit(t, err, log, "memory", "64 MiB")
	if strings.Contains(log, "allocated 1024 MiB") {
		t.Error("the hog got all it asked for")
	}
}

// TestMemoryFloor: without a cgroup, RLIMIT_DATA still stops the hog.
// It binds each process, the init (a Go program: its heap, the stacks of
// the threads it starts) as much as the build, so the limit is well above
// what the init maps: under 64 MiB the init died once, as uid 65534.
func TestMemoryFloor(t *testing.T) {
	withoutCgroups(t)
	err, log := runLimited(t, Limits{Memory: 256 << 20}, nil, "hog", "1024")
	t.Logf("error: %v\nlog (end):\n%s", err, tailString(log, 400))
	var ee *ExitError
	if !errors.As(err, &ee) || strings.Contains(log, "allocated 1024 MiB") {
		t.Errorf("got %v, want the hog to fail", err)
	}
}

func TestPidsLimit(t *testing.T) {
	requireCgroup(t, "pids")
	err, log := runLimited(t, Limits{Pids: 64}, nil, "threads", "1000")
	wantLimit(t, err, log, "pids", "64 processes and threads")
}

// TestPidsFloor: without a cgroup, RLIMIT_NPROC still stops the bomb.
func TestPidsFloor(t *testing.T) {
	withoutCgroups(t)
	err, log := runLimited(t, Limits{Pids: 64}, nil, "threads", "1000")
	t.Logf("error: %v\nlog (end):\n%s", err, tailString(log, 400))
	var ee *ExitError
	if !errors.As(err, &ee) || strings.Contains(log, "1000 running") {
		t.Errorf("got %v, want the thread bomb to fail", err)
	}
}

// withoutCgroups makes Run find no cgroup for the length of the test.
func withoutCgroups(t *testing.T) {
	saved := cgroupHostOnce
	cgroupHostOnce = func() cgroupHost { return cgroupHost{} }
	t.Cleanup(func() { cgroupHostOnce = saved })
}

func TestTmpfsLimit(t *testing.T) {
	err, log := runLimited(t, Limits{Tmpfs: 64 << 20}, nil, "fill", "/tmp/big", "300")
	wantLimit(t, err, log, "tmpfs", "64 MiB")
	if !strings.Contains(err.Error(), "/tmp") || !strings.Contains(log, "no space left on device") {
		t.Errorf("the error should name /tmp and the log say why: %v", err)
	}
}

func TestDiskLimit(t *testing.T) {
	out := t.TempDir()
	err, log := runLimited(t, Limits{Disk: 32 << 20}, []Mount{{Source: out, Target: "/out", Writable: true}},
		"fill", "/out/big", "300")
	wantLimit(t, err, log, "disk", "32 MiB")
	if u := diskUsage([]string{out}); u > 64<<20 {
		t.Errorf("%d bytes written, want about 32 MiB", u)
	}
}

// TestDiskLimitManyFiles: no one file is large, together they are.
func TestDiskLimitManyFiles(t *testing.T) {
	out := t.TempDir()
	err, log := runLimited(t, Limits{Disk: 32 << 20}, []Mount{{Source: out, Target: "/out", Writable: true}},
		"fill-many", "/out", "300")
	wantLimit(t, err, log, "disk", "32 MiB")
	if u := diskUsage([]string{out}); u > 128<<20 {
		t.Errorf("%d bytes written, want about 32 MiB", u)
	}
}

// TestWithinLimits: a build that stays within its limits is not stopped,
// and the limits are where they should be.
func TestWithinLimits(t *testing.T) {
	out := t.TempDir()
	err, log := runLimited(t, Limits{Memory: 256 << 20, Pids: 256, Tmpfs: 64 << 20, Disk: 64 << 20},
		[]Mount{{Source: out, Target: "/out", Writable: true}}, "fill", "/out/small", "8")
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
}

func TestDefaultTimeout(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{{0, DefaultTimeout}, {time.Second, time.Second}, {-1, -1}} {
		_, got, err := check(&Spec{Builtin: "true", Timeout: tc.in})
		if err != nil || got != tc.want {
			t.Errorf("Timeout %v: got %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if DefaultTimeout > time.Hour || DefaultTimeout < 5*time.Minute {
		t.Errorf("DefaultTimeout is %v, want minutes", DefaultTimeout)
	}
}

func TestSizeString(t *testing.T) {
	for n, want := range map[int64]string{512: "512 bytes", 64 << 20: "64 MiB", 3 << 29: "1.5 GiB", 8 << 30: "8 GiB"} {
		if got := sizeString(n); got != want {
			t.Errorf("sizeString(%d) = %q, want %q", n, got, want)
		}
	}
}

// BenchmarkRunWithLimits is BenchmarkRun with the default limits: a cgroup
// made and removed for each build where the machine has one.
func BenchmarkRunWithLimits(b *testing.B) {
	requireNamespaces(b)
	for b.Loop() {
		if err := Run(context.Background(), &Spec{Builtin: "true", Limits: DefaultLimits}); err != nil {
			b.Fatal(err)
		}
	}
}
