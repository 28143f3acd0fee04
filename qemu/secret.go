package qemu

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// tokenRE is a package server token as the server makes them.
var tokenRE = regexp.MustCompile(`^heph_[A-Za-z0-9_-]{43}$`)

// BootToken is a package server token handed to the guest at boot.
type BootToken struct {
	Flag    string // the flag that named File, for errors: "--reporter-token-file"
	File    string
	KernArg string // the kernel command line's NAME=: "heph.reporter_token"
	FwCfg   string // QEMU's fw_cfg name QEMU reads File into, or ""
}

// ReporterToken and AdminToken are the tokens hephc boot hands over: the
// sentinel's (fw_cfg for kernels with CONFIG_FW_CFG_SYSFS, the kernel
// command line for the pinned gokrazy kernel) and the package server's
// admin token, which hephc serve adopts from /proc/cmdline
// (--boot-tokens).
func ReporterToken(file string) BootToken {
	return BootToken{Flag: "--reporter-token-file", File: file, KernArg: "heph.reporter_token", FwCfg: "opt/heph/reporter-token"}
}

func AdminToken(file string) BootToken {
	return BootToken{Flag: "--admin-token-file", File: file, KernArg: "heph.admin_token"}
}

// WithTokens hands the tokens to the guest at boot, never through the
// store: each on the kernel command line as KernArg=, and as QEMU's fw_cfg
// FwCfg (read from its file by QEMU) where it has one. The command line
// goes to QEMU in a -readconfig file of mode 0600, not in its argv, which
// every user of the host can read (ps); "quiet" keeps the kernel from
// printing it on the console. It returns QEMU's arguments (with dry, the
// ones to show: nothing is written), the ones to show (the tokens elided)
// and what removes the file when QEMU is done. Errors name the token's
// flag; a file that does not hold a token is refused without showing
// what it holds.
func WithTokens(tokens []BootToken, qargs []string, dry bool) (run, shown []string, cleanup func(), err error) {
	cleanup = func() {}
	if len(tokens) == 0 {
		return qargs, qargs, cleanup, nil
	}
	i := slices.Index(qargs, "-append")
	if i < 0 || i+1 >= len(qargs) {
		return nil, nil, cleanup, fmt.Errorf("%s: no kernel command line to add the token to", tokens[0].Flag)
	}
	kargs := qargs[i+1] + " quiet"
	withToks, withShown := kargs, kargs
	var fwcfg []string
	for _, t := range tokens {
		tok, err := readToken(t)
		if err != nil {
			return nil, nil, cleanup, err
		}
		withToks += " " + t.KernArg + "=" + tok
		withShown += " " + t.KernArg + "=(from " + t.File + ")"
		if t.FwCfg != "" {
			fwcfg = append(fwcfg, "-fw_cfg", "name="+t.FwCfg+",file="+strings.ReplaceAll(t.File, ",", ",,"))
		}
	}
	// QEMU's config files quote values in double quotes, without escapes,
	// at most 1023 bytes.
	if strings.ContainsAny(kargs, "\"\n") || len(withToks) > 1023 {
		return nil, nil, cleanup, fmt.Errorf("%s: the kernel command line holds a double quote or is too long to hand over with the token", tokens[0].Flag)
	}
	shown = append(slices.Clone(qargs), fwcfg...)
	shown[i+1] = withShown
	if dry {
		return shown, shown, cleanup, nil
	}
	dir, err := os.MkdirTemp("", "hephc-boot-")
	if err != nil {
		return nil, nil, cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	cfg := filepath.Join(dir, "kernel.cfg")
	if err := os.WriteFile(cfg, []byte("[machine]\n  append = \""+withToks+"\"\n"), 0o600); err != nil {
		cleanup()
		return nil, nil, func() {}, err
	}
	run = slices.Concat(qargs[:i], []string{"-readconfig", cfg}, qargs[i+2:], fwcfg)
	return run, shown, cleanup, nil
}

// readToken reads t's file: one package server token.
func readToken(t BootToken) (string, error) {
	f, err := os.Open(t.File)
	if err != nil {
		return "", fmt.Errorf("%s: %w", t.Flag, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	f.Close()
	if err != nil {
		return "", fmt.Errorf("%s: %w", t.Flag, err)
	}
	tok := strings.TrimSpace(string(b))
	if !tokenRE.MatchString(tok) {
		return "", fmt.Errorf("%s %s: not a package server token (heph_ and 43 characters, as hephc serve token makes)", t.Flag, t.File)
	}
	return tok, nil
}
