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
package main

import (
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

	"hephc.dev/hephc/system/hephinit/internal/image"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("selftest", flag.ContinueOnError)
	fset.SetOutput(stderr)
	programs := fset.String("programs", image.ProgramsFile, "the programs file")
	services := fset.String("services", image.ServicesFile, "the services file")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	problems := check(*programs, *services, stdout)
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "HEPH-SELFTEST FAIL: %s\n", strings.Join(problems, "; "))
		return 1
	}
	fmt.Fprintln(stdout, "HEPH-SELFTEST OK")
	// Booted from a heph disk: the loader entry is good now (bless.go).
	if err := markGood(stdout); err != nil {
		fmt.Fprintf(stdout, "heph-boot: marking the boot entry good: %v\n", err)
		return 1
	}
	return 0
}

// check returns what is wrong with the image, or nothing; the capability
// checks print their lines to stdout.
func check(programsFile, servicesFile string, stdout io.Writer) []string {
	var problems []string
	progs, err := image.ReadPrograms(programsFile)
	if err != nil {
		problems = append(problems, "reading the program list: "+err.Error())
	}
	if err == nil && len(progs) == 0 {
		problems = append(problems, "the image lists no programs")
	}
	for _, p := range progs {
		if err := checkExecutable(p.Path); err != nil {
			problems = append(problems, fmt.Sprintf("program %s of package %s: %v", p.Path, p.Package, err))
			continue
		}
		if err := tryStart(p.Path); err != nil {
			problems = append(problems, fmt.Sprintf("program %s of package %s does not start: %v", p.Path, p.Package, err))
		}
	}
	problems = append(problems, checkCapabilities(progs, stdout)...)
	svcs, err := image.ReadServices(servicesFile)
	if err != nil {
		problems = append(problems, "reading the services: "+err.Error())
	}
	for _, name := range image.Names(svcs) {
		if err := checkExecutable(svcs[name].Command); err != nil {
			problems = append(problems, fmt.Sprintf("service %s: %v", name, err))
		}
	}
	return problems
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
