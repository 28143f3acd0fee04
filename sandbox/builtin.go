package sandbox

import (
	"fmt"
	"io"
	"os"
	"sync"
)

var (
	builtinsMu sync.RWMutex
	builtins   = map[string]BuiltinFunc{}
)

// BuiltinFunc is a builder implemented in Go. It runs inside the sandbox, in
// a fresh process of this executable, with the build's args (argv[1:]) and
// environment; returning an error fails the build with status 1.
type BuiltinFunc func(args, env []string, stdout, stderr io.Writer) error

// RegisterBuiltin makes f available as Spec.Builtin name. Call it from an
// init function: the executable running inside the sandbox must have it
// registered too. It panics if name is registered twice.
func RegisterBuiltin(name string, f BuiltinFunc) {
	builtinsMu.Lock()
	defer builtinsMu.Unlock()
	if _, dup := builtins[name]; dup {
		panic("sandbox: builtin " + name + " registered twice")
	}
	builtins[name] = f
}

func lookupBuiltin(name string) BuiltinFunc {
	builtinsMu.RLock()
	defer builtinsMu.RUnlock()
	return builtins[name]
}

// Init must be the first thing main (and TestMain) does. If this process was
// started by Run as a sandbox's init or as a builtin, Init does that job and
// exits; otherwise it returns at once.
func Init() {
	if len(os.Args) == 0 {
		return
	}
	switch os.Args[0] {
	case initArg0:
		os.Exit(runInit())
	case keeperArg0:
		os.Exit(runKeeper())
	case builtinArg0:
		os.Exit(runBuiltin(os.Args[1:]))
	}
}

// runBuiltin runs the builtin argv[0] with args argv[1:].
func runBuiltin(argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "sandbox: builtin: no name given")
		return 127
	}
	f := lookupBuiltin(argv[0])
	if f == nil {
		fmt.Fprintf(os.Stderr, "sandbox: no builtin %q in this executable\n", argv[0])
		return 127
	}
	if err := f(argv[1:], os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", argv[0], err)
		return 1
	}
	return 0
}

// BuiltinArgv returns the path and argv that run builtin name with args
// inside a sandbox started with Spec.Builtin, for a builtin that needs to
// start another one.
func BuiltinArgv(name string, args ...string) (string, []string) {
	return ExePath, append([]string{builtinArg0, name}, args...)
}
