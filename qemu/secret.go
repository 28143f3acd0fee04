package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// reporterTokenRE is a package server token as the server makes them.
var reporterTokenRE = regexp.MustCompile(`^heph_[A-Za-z0-9_-]{43}$`)

// WithReporterToken hands the reporter token in file to the guest at
// boot, never through the store: as QEMU's fw_cfg opt/heph/reporter-token
// (read from the file by QEMU) and as heph.reporter_token= on the kernel
// command line, for kernels without CONFIG_FW_CFG_SYSFS (the pinned
// gokrazy kernel). The command line goes to QEMU in a -readconfig file
// of mode 0600, not in its argv, which every user of the host can read
// (ps); "quiet" keeps the kernel from printing it on the console. It
// returns QEMU's arguments (with dry, the ones to show: nothing is
// written), the ones to show (the token elided) and what removes the
// file when QEMU is done. Errors name the --reporter-token-file flag.
func WithReporterToken(file string, qargs []string, dry bool) (run, shown []string, cleanup func(), err error) {
	cleanup = func() {}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, cleanup, fmt.Errorf("--reporter-token-file: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	f.Close()
	if err != nil {
		return nil, nil, cleanup, fmt.Errorf("--reporter-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if !reporterTokenRE.MatchString(tok) {
		return nil, nil, cleanup, fmt.Errorf("--reporter-token-file %s: not a package server token (heph_ and 43 characters, as hephc serve token makes)", file)
	}
	i := slices.Index(qargs, "-append")
	if i < 0 || i+1 >= len(qargs) {
		return nil, nil, cleanup, errors.New("--reporter-token-file: no kernel command line to add the token to")
	}
	kargs := qargs[i+1] + " quiet"
	// QEMU's config files quote values in double quotes, without escapes,
	// at most 1023 bytes.
	if strings.ContainsAny(kargs, "\"\n") || len(kargs)+len(tok)+len(" heph.reporter_token=") > 1023 {
		return nil, nil, cleanup, errors.New("--reporter-token-file: the kernel command line holds a double quote or is too long to hand over with the token")
	}
	fwcfg := []string{"-fw_cfg", "name=opt/heph/reporter-token,file=" + strings.ReplaceAll(file, ",", ",,")}
	shown = append(slices.Clone(qargs), fwcfg...)
	shown[i+1] = kargs + " heph.reporter_token=(from " + file + ")"
	if dry {
		return shown, shown, cleanup, nil
	}
	dir, err := os.MkdirTemp("", "hephc-boot-")
	if err != nil {
		return nil, nil, cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	cfg := filepath.Join(dir, "kernel.cfg")
	if err := os.WriteFile(cfg, []byte("[machine]\n  append = \""+kargs+" heph.reporter_token="+tok+"\"\n"), 0o600); err != nil {
		cleanup()
		return nil, nil, func() {}, err
	}
	run = slices.Concat(qargs[:i], []string{"-readconfig", cfg}, qargs[i+2:], fwcfg)
	return run, shown, cleanup, nil
}
