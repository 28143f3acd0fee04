package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/sandbox"

	_ "hephc.dev/hephc/builder" // the built-in builders
)

// env is what a command may touch of the outside world.
type env struct {
	stdout, stderr io.Writer
	cwd            string
	getenv         func(string) string
	store          string // --store, or HEPHC_STORE
}

// command is one subcommand: its name, a line of help, and how it runs.
type command struct {
	name    string
	args    string // e.g. "[flags] [FILE.cue…|DIR]"
	summary string
	run     func(e *env, fs *pflag.FlagSet, args []string) error
	flags   func(fs *pflag.FlagSet)
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

// silentError is a failure the command has already reported (e.g. as
// JSON): exit code 1, nothing more printed.
type silentError struct{}

func (silentError) Error() string { return "failed" }

// usageError is bad usage: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// Main runs hephc with os.Args and returns its exit code: 0 success, 1 a
// user or build error, 2 bad usage.
func Main() int {
	// A build sandbox starts this executable again as its init or to run
	// a built-in builder; then Init does that and exits.
	sandbox.Init()
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hephc:", err)
		return 1
	}
	e := &env{stdout: os.Stdout, stderr: os.Stderr, cwd: cwd, getenv: os.Getenv}
	return run(e, os.Args[1:])
}

func run(e *env, args []string) int {
	global := pflag.NewFlagSet("hephc", pflag.ContinueOnError)
	global.SetInterspersed(false)
	global.SetOutput(io.Discard)
	global.StringVar(&e.store, "store", "", "store directory (env HEPHC_STORE; default $XDG_DATA_HOME/hephc)")
	help := global.BoolP("help", "h", false, "show help")
	if err := global.Parse(args); err != nil {
		fmt.Fprintf(e.stderr, "hephc: %v\n", err)
		mainUsage(e.stderr, global)
		return 2
	}
	if e.store == "" {
		e.store = e.getenv("HEPHC_STORE")
	}
	rest := global.Args()
	if *help || len(rest) == 0 {
		if len(rest) == 0 && !*help {
			fmt.Fprintln(e.stderr, "hephc: no command given")
			mainUsage(e.stderr, global)
			return 2
		}
		mainUsage(e.stdout, global)
		return 0
	}
	if rest[0] == "help" {
		if len(rest) > 1 {
			rest = []string{rest[1], "--help"}
		} else {
			mainUsage(e.stdout, global)
			return 0
		}
	}
	var cmd *command
	for _, c := range commands {
		if c.name == rest[0] {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(e.stderr, "hephc: unknown command %q\n", rest[0])
		mainUsage(e.stderr, global)
		return 2
	}
	fs := pflag.NewFlagSet("hephc "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolP("help", "h", false, "show help")
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	if err := fs.Parse(rest[1:]); err != nil {
		fmt.Fprintf(e.stderr, "hephc %s: %v\n", cmd.name, err)
		commandUsage(e.stderr, cmd, fs)
		return 2
	}
	if h, _ := fs.GetBool("help"); h {
		commandUsage(e.stdout, cmd, fs)
		return 0
	}
	err := cmd.run(e, fs, fs.Args())
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "hephc %s: %v\n", cmd.name, ue.msg)
		commandUsage(e.stderr, cmd, fs)
		return 2
	}
	printError(e, err)
	return 1
}

// printError is the one place errors are printed: every error as
// lang.Report says it (diagnostics about the configuration one a line
// with file:line:col, anything else after "hephc: "), failed builds first
// made diagnostics that end with their logs. A silentError has been
// reported already.
func printError(e *env, err error) {
	if _, ok := err.(silentError); ok {
		return
	}
	if ds, ok := buildFailures(e.cwd, err); ok {
		err = ds
	}
	fmt.Fprintln(e.stderr, lang.Report(e.cwd, err))
}

func mainUsage(w io.Writer, global *pflag.FlagSet) {
	fmt.Fprintln(w, "usage: hephc [--store DIR] COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "hephc compiles whole systems described in CUE into a content-addressed")
	fmt.Fprintln(w, "derivation graph and realizes it into a hash-keyed store.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	cs := append([]*command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "global flags:")
	fmt.Fprint(w, global.FlagUsages())
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'hephc COMMAND --help' for a command's flags.")
}

func commandUsage(w io.Writer, c *command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "usage: hephc %s %s\n\n%s\n", c.name, c.args, c.summary)
	if u := fs.FlagUsages(); strings.TrimSpace(u) != "" {
		fmt.Fprintf(w, "\nflags:\n%s", u)
	}
}

// buildFailures says failed builds: the derivation, where it is written,
// the end of its log and where the log is, a diagnostic each. It reports
// whether err was made of build errors only.
func buildFailures(cwd string, err error) (lang.Diagnostics, bool) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, one := range errs {
		if _, ok := one.(*realize.BuildError); !ok {
			return nil, false
		}
	}
	var ds lang.Diagnostics
	for _, one := range errs {
		be := one.(*realize.BuildError)
		var b strings.Builder
		fmt.Fprintf(&b, "building %s", be.Path)
		if be.Origin.Attr != "" {
			b.WriteString(" (" + be.Origin.Attr)
			if be.Origin.Pos.IsValid() {
				b.WriteString(" at " + be.Origin.Pos.Rel(cwd))
			}
			b.WriteString(")")
		}
		fmt.Fprintf(&b, " failed: %v", be.Err)
		var le *sandbox.LimitError
		if errors.As(be.Err, &le) {
			if le.Limit == "timeout" {
				b.WriteString("\nraise the time limit with the derivation's limits.timeout, or --timeout for every build")
			} else {
				field := le.Limit
				if field == "tmpfs" {
					field = "tmp"
				}
				fmt.Fprintf(&b, "\nraise it with the derivation's limits.%s (limits never change its hash)", field)
			}
		}
		if len(be.LogTail) > 0 {
			fmt.Fprintf(&b, "\nlast %d log lines:", len(be.LogTail))
			for _, l := range be.LogTail {
				fmt.Fprintf(&b, "\n  | %s", l)
			}
		}
		if be.LogPath != "" {
			fmt.Fprintf(&b, "\nfull log: %s", be.LogPath)
		}
		ds = append(ds, lang.Diagnostic{Msg: b.String()})
	}
	return ds, true
}
