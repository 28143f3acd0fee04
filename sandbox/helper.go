package sandbox

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The sandbox's init need not be this whole executable. Re-executing
// hephc (tens of MB, the package initialization of CUE, YAML, protobuf,
// apd and SQLite: 4–5 ms on a quiet machine, far more on a busy one) for
// every build costs more than the sandbox itself; a small static program
// made of this package alone starts in well under a millisecond.
//
// That program cannot be built with the executable (go install and go
// run build one binary), so it is built from this package's own source,
// embedded, the first time a process needs it and a Go toolchain is at
// hand (the one this executable was built with, or go on PATH), offline
// (GOPROXY=off: golang.org/x/sys comes from the module cache), in the
// background: until it is ready, and wherever it cannot be built, Run
// re-executes this executable as before. It is kept in the user's cache
// directory under a key that hashes its source, the Go version and the
// architecture, so one build serves every process until the source
// changes. Both inits are the same code (initMain); the helper is only
// used if it and its directory belong to this user (or root) and nobody
// else may write them. HEPHC_SANDBOX_INIT=self turns it off.

//go:embed *.go
var sources embed.FS

// xsysVersion is the golang.org/x/sys the helper is built with: go.mod's
// (TestHelperXSysVersion).
const xsysVersion = "v0.50.0"

// InitEnv, set to "self", makes Run re-execute this executable as the
// init instead of the helper.
const InitEnv = "HEPHC_SANDBOX_INIT"

var (
	helperOnce  sync.Once
	helperReady atomic.Pointer[string]
	// helperDone is closed once the helper is found or its build ends,
	// and helperErr then says why there is none.
	helperDone = make(chan struct{})
	helperErr  error
)

// initProgram returns the program Run starts as the init: the helper if
// it is ready, else "" (this executable). The first call looks for the
// helper and, if it is not built yet, starts building it.
func initProgram() string {
	helperOnce.Do(func() {
		if os.Getenv(InitEnv) == "self" {
			close(helperDone)
			return
		}
		dir, key, err := helperKey()
		if err != nil {
			helperErr = err
			close(helperDone)
			return
		}
		exe := filepath.Join(dir, key, "init")
		if trusted(exe) {
			helperReady.Store(&exe)
			close(helperDone)
			return
		}
		go func() {
			defer close(helperDone)
			helperErr = buildHelper(dir, key)
			if helperErr == nil && !trusted(exe) {
				helperErr = fmt.Errorf("%s is not ours alone", exe)
			}
			if helperErr == nil {
				helperReady.Store(&exe)
			}
		}()
	})
	if p := helperReady.Load(); p != nil {
		return *p
	}
	return ""
}

// WaitInitHelper waits until the helper is found or its build has ended,
// and returns its path, or "" if Run re-executes this executable.
// Benchmarks call it so that what they time does not depend on when the
// build ends.
func WaitInitHelper() string {
	initProgram()
	<-helperDone
	return initProgram()
}

// selfExe is this executable's path, which an init that is the helper
// mounts at ExePath for builtins.
var selfExe = sync.OnceValues(func() (string, error) { return os.Readlink("/proc/self/exe") })

// helperSources returns the embedded non-test source files, sorted.
func helperSources() (map[string][]byte, []string, error) {
	files := map[string][]byte{}
	var names []string
	err := fs.WalkDir(sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := sources.ReadFile(p)
		if err != nil {
			return err
		}
		files[p] = b
		names = append(names, p)
		return nil
	})
	sort.Strings(names)
	return files, names, err
}

// helperMain is the helper's main package.
const helperMain = `package main

import (
	"fmt"
	"os"

	"hephc.dev/hephc/sandbox"
)

func main() {
	sandbox.Init()
	fmt.Fprintln(os.Stderr, "hephc sandbox init: not started as one")
	os.Exit(125)
}
`

// helperKey returns the directory that keeps helpers and the key of this
// executable's: a hash of its source, the Go version and architecture.
func helperKey() (dir, key string, err error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "", err
	}
	files, names, err := helperSources()
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "hephc sandbox init\x00%s\x00%s\x00%s\x00%s\x00", runtime.Version(), runtime.GOOS, runtime.GOARCH, xsysVersion)
	fmt.Fprintf(h, "%s\x00", helperMain)
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return filepath.Join(cache, "hephc", "sandbox-init"), hex.EncodeToString(h.Sum(nil))[:32], nil
}

// trusted says whether the helper at exe may be run: a regular executable
// file, it, its directory and the directory of helpers owned by this user
// or root and writable by nobody else.
func trusted(exe string) bool {
	for _, p := range []string{exe, filepath.Dir(exe), filepath.Dir(filepath.Dir(exe))} {
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return false
		}
		if st.Uid != uint32(os.Geteuid()) && st.Uid != 0 || st.Mode&0o022 != 0 {
			return false
		}
		if p == exe && (st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o100 == 0) {
			return false
		}
	}
	return true
}

// goTool returns the go command to build the helper with.
func goTool() (string, error) {
	//lint:ignore SA1019 the toolchain this executable was built with, if it is still there
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return exec.LookPath("go")
}

// buildHelper builds the helper into dir/key/init, unless another process
// is building it.
func buildHelper(dir, key string) error {
	gotool, err := goTool()
	if err != nil {
		return err
	}
	// Only with a build cache that holds something: a cold one would
	// compile half the standard library (a test's empty HOME, say).
	gocache := os.Getenv("GOCACHE")
	if gocache == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		gocache = filepath.Join(c, "go-build")
	}
	if _, err := os.Stat(filepath.Join(gocache, "README")); err != nil {
		return fmt.Errorf("no Go build cache to build the sandbox init with: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, key+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another process builds the sandbox init: %w", err)
	}
	final := filepath.Join(dir, key)
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	// What a process killed while building left (an hour is more than
	// any build takes).
	if old, _ := filepath.Glob(filepath.Join(dir, "build-*")); len(old) > 0 {
		for _, p := range old {
			if fi, err := os.Lstat(p); err == nil && time.Since(fi.ModTime()) > time.Hour {
				os.RemoveAll(p)
			}
		}
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	files, names, err := helperSources()
	if err != nil {
		return err
	}
	src := filepath.Join(tmp, "src")
	goVersion := strings.TrimPrefix(runtime.Version(), "go")
	if parts := strings.SplitN(goVersion, ".", 3); len(parts) >= 2 {
		goVersion = parts[0] + "." + parts[1]
	}
	write := map[string][]byte{
		"go.mod":           fmt.Appendf(nil, "module hephc.dev/hephc\n\ngo %s\n\nrequire golang.org/x/sys %s\n", goVersion, xsysVersion),
		"cmd/init/main.go": []byte(helperMain),
	}
	for _, n := range names {
		write["sandbox/"+n] = files[n]
	}
	for name, b := range write {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	cmd := exec.Command(gotool, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", filepath.Join(out, "init"), "./cmd/init")
	cmd.Dir = src
	cmd.Env = append(helperBuildEnv(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local",
		"GOPROXY=off", "GOSUMDB=off", "GONOSUMDB=*", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	// It dies with this process (Pdeathsig fires when the thread that
	// started it ends: keep this goroutine on it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return err
	}
	// At a low priority: it runs while builds do (the compiler's
	// processes, started later, inherit it).
	unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, 10)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("building the sandbox init: %v\n%s", err, log.String())
	}
	if err := os.Chmod(filepath.Join(out, "init"), 0o555); err != nil {
		return err
	}
	if err := os.Rename(out, final); err != nil {
		if _, serr := os.Stat(final); serr == nil {
			return nil // built by another process meanwhile
		}
		return err
	}
	return nil
}

// helperBuildEnv is the environment the go command needs to find its
// caches: nothing else of this process's.
func helperBuildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "GOCACHE", "GOMODCACHE", "GOPATH", "XDG_CACHE_HOME", "TMPDIR":
			env = append(env, kv)
		}
	}
	return env
}
