package imagetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"

	"hephc.dev/hephc/qemu"
)

var (
	versionOnce sync.Once
	version     string
)

// QEMUVersion is the first line of `qemu-system-x86_64 --version` on this
// host ("QEMU emulator version 8.2.2 (…)"), or "none" when there is no
// QEMU: it is part of every image test's derivation, so a test passed
// with one QEMU is run again with another.
func QEMUVersion() string {
	versionOnce.Do(func() {
		version = "none"
		out, err := exec.Command(qemu.Binary, "--version").Output()
		if err == nil {
			if l := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]); l != "" {
				version = l
			}
		}
	})
	return version
}

// ErrNoQEMU says why an image test cannot run on a host without QEMU.
var ErrNoQEMU = errors.New("image tests boot the image in the host's QEMU, and " + qemu.Binary + " is not on PATH or does not run: install it (Debian: apt-get install qemu-system-x86), or require no image tests in the policy")

// Boot boots the machine cfg (an image's toplevel, with t's memory) in
// the host's QEMU and runs t's steps on its console, copying the console
// to transcript. QEMU is stopped when the steps end. The error is a
// *StepError when a step failed.
func Boot(ctx context.Context, cfg qemu.Config, t Test, transcript io.Writer) (passed []string, err error) {
	if QEMUVersion() == "none" {
		return nil, ErrNoQEMU
	}
	m, err := qemu.Start(ctx, qemu.Binary, cfg.Args(), qemu.StartOptions{})
	if err != nil {
		return nil, err
	}
	con := NewConsole(m.Console(), m.Console(), transcript)
	passed, err = con.Run(ctx, t.Steps)
	if errors.Is(err, ErrStopped) {
		if werr := m.Wait(); werr != nil {
			err = fmt.Errorf("%w (%s: %v)", err, qemu.Binary, werr)
		}
	}
	m.Kill()
	<-con.ended // the transcript is complete
	return passed, err
}
