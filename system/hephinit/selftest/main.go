// Command selftest checks a heph image from inside: every program of its
// packages (/etc/heph/programs.json) is present, an executable for this
// machine, and starts; every service's command (/etc/heph/services.json)
// is present and an executable; and a program that provides a capability
// with a check of its own (capabilityChecks: gocryptfs's encrypted
// containers) does what it is for, each such check printing a line
// "selftest: CAPABILITY: ok" (or "…: FAIL: why"). Its last line on stdout
// is
//
//	HEPH-SELFTEST OK
//
// or HEPH-SELFTEST FAIL: followed by every problem found, and it exits 1
// if anything is wrong. (Homeworld's idea: the integration test is also the
// health check.)
//
// With -interval it keeps watching: it checks again every interval and
// prints the result when it changes (so a failure, and the recovery, each
// show once on the console), and with -health ADDR serves the last
// results as JSON at GET /health (monitor.go): 200 when all pass, 503
// when one fails, each check with its last result and when it ran.
package main

import (
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"hephc.dev/hephc/system/hephinit/internal/image"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("selftest", flag.ContinueOnError)
	fset.SetOutput(stderr)
	programs := fset.String("programs", image.ProgramsFile, "the programs file")
	services := fset.String("services", image.ServicesFile, "the services file")
	interval := fset.Duration("interval", 0, "check again every `DURATION` (at least 1s), printing the result when it changes; 0: check once and exit")
	health := fset.String("health", "", "serve the results as JSON at GET /health on `ADDR` (e.g. :9100); needs -interval")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	if fset.NArg() > 0 || (*interval != 0 && *interval < time.Second) || (*health != "" && *interval == 0) {
		fmt.Fprintln(stderr, "selftest: usage: selftest [-programs FILE] [-services FILE] [-interval DURATION (>= 1s) [-health ADDR]]")
		return 2
	}
	c := checker{programs: *programs, services: *services}
	if *interval == 0 {
		results := c.check()
		fmt.Fprint(stdout, report(results))
		if len(problems(results)) > 0 {
			return 1
		}
		// Booted from a heph disk: the loader entry is good now (bless.go).
		if err := markGood(stdout); err != nil {
			fmt.Fprintf(stdout, "heph-boot: marking the boot entry good: %v\n", err)
			return 1
		}
		return 0
	}
	m := newMonitor(c, *interval, stdout)
	if *health != "" {
		if err := m.serve(*health); err != nil {
			fmt.Fprintf(stderr, "selftest: %v\n", err)
			return 1
		}
	}
	m.loop(context.Background())
	return 0
}

// result is one check's outcome: its name (what /health shows), and what
// is wrong, if anything, as the FAIL line says it. A capability check
// also has a line of its own ("selftest: NAME: ok").
type result struct {
	name, problem, line string
}

// checker checks the image its programs and services files describe.
type checker struct {
	programs, services string
}

// check checks the image: the programs (each present, executable, and
// starting), the capabilities, the services' commands.
func (c checker) check() []result {
	var results []result
	progs, err := image.ReadPrograms(c.programs)
	switch {
	case err != nil:
		results = append(results, result{name: "programs", problem: "reading the program list: " + err.Error()})
	case len(progs) == 0:
		results = append(results, result{name: "programs", problem: "the image lists no programs"})
	}
	for _, p := range progs {
		r := result{name: "program " + p.Path}
		if err := checkExecutable(p.Path); err != nil {
			r.problem = fmt.Sprintf("program %s of package %s: %v", p.Path, p.Package, err)
		} else if err := tryStart(p.Path); err != nil {
			r.problem = fmt.Sprintf("program %s of package %s does not start: %v", p.Path, p.Package, err)
		}
		results = append(results, r)
	}
	results = append(results, checkCapabilities(progs)...)
	svcs, err := image.ReadServices(c.services)
	if err != nil {
		results = append(results, result{name: "services", problem: "reading the services: " + err.Error()})
	}
	for _, name := range image.Names(svcs) {
		r := result{name: "service " + name}
		if err := checkExecutable(svcs[name].Command); err != nil {
			r.problem = fmt.Sprintf("service %s: %v", name, err)
		}
		results = append(results, r)
	}
	return results
}

// problems are what is wrong, in the order checked.
func problems(results []result) []string {
	var ps []string
	for _, r := range results {
		if r.problem != "" {
			ps = append(ps, r.problem)
		}
	}
	return ps
}

// report is what a run prints: the capability lines, then HEPH-SELFTEST
// OK or HEPH-SELFTEST FAIL: and every problem.
func report(results []result) string {
	var b strings.Builder
	for _, r := range results {
		if r.line != "" {
			b.WriteString(r.line + "\n")
		}
	}
	if ps := problems(results); len(ps) > 0 {
		fmt.Fprintf(&b, "HEPH-SELFTEST FAIL: %s\n", strings.Join(ps, "; "))
	} else {
		b.WriteString("HEPH-SELFTEST OK\n")
	}
	return b.String()
}

// machines maps GOARCH to the ELF machine of its programs.
var machines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386,
	"riscv64": elf.EM_RISCV, "arm": elf.EM_ARM,
}

// checkExecutable says why path is not a program this machine can run:
// missing, not a regular file, without an executable bit, or (for an ELF
// file) built for another machine or linked against a loader the image
// lacks. A #! script passes if its interpreter does.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is missing", path)
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%v)", path, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable (mode %v)", path, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if string(magic[:2]) == "#!" {
		return nil
	}
	if string(magic[:]) != elf.ELFMAG {
		return fmt.Errorf("%s is neither an ELF file nor a #! script", path)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if want, ok := machines[runtime.GOARCH]; ok && ef.Machine != want {
		return fmt.Errorf("%s is for %v, this machine runs %v", path, ef.Machine, want)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return fmt.Errorf("%s is not an executable (%v)", path, ef.Type)
	}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		if _, err := os.Stat(interp); err != nil {
			return fmt.Errorf("%s needs the loader %s, which is missing", path, interp)
		}
	}
	return nil
}

// tryStart has the kernel load path and start it, and kills it before it
// runs a single instruction: the child is traced, so it stops at the exec
// (a selftest or an init that ran would print or start things). Where
// tracing is not allowed the probe is skipped: the static checks stand.
func tryStart(path string) error {
	cmd := exec.Command(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return nil
		}
		return err
	}
	afterStart()
	cmd.Process.Kill()
	cmd.Wait()
	return nil
}

// afterStart runs between a probe's start and its kill (tests wait there).
var afterStart = func() {}
