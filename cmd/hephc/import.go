package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// OwnerConfigFile is the store owner's configuration, in the store's
// directory: its policy field's trust policy must hold for everything the
// store admits from outside. Only the owner may write it.
const OwnerConfigFile = "config.cue"

func init() {
	register(&command{
		name:    "import",
		args:    "[--policy FILE]… DIR|FILE.tar",
		summary: "import an archive of store paths (hephc export), all or nothing, if the trust policy admits every path",
		flags: func(fs *pflag.FlagSet) {
			fs.StringArray("policy", nil, "a .cue file whose policy's trust must hold too (repeatable); the store owner's "+OwnerConfigFile+" always applies")
		},
		run: runImport,
	})
}

func runImport(e *env, fs *pflag.FlagSet, args []string) error {
	files, _ := fs.GetStringArray("policy")
	if len(args) != 1 {
		return usagef("want one archive directory")
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	policies, err := trustPolicies(e, st, files)
	if err != nil {
		return err
	}
	if len(policies) == 0 {
		return fmt.Errorf("importing %s: no trust policy says what to admit: write one in %s (the store owner's) or give --policy FILE", args[0], filepath.Join(st.Dir, OwnerConfigFile))
	}
	start := time.Now()
	dir, cleanup, err := layoutDir(absPath(e.cwd, args[0]))
	if err != nil {
		return err
	}
	defer cleanup()
	res, err := archive.Import(context.Background(), st, dir, archive.ImportOptions{
		Policies:     policies,
		Now:          time.Now(),
		Attestations: trust.StoreDir(st.Dir),
	})
	if err != nil {
		return err
	}
	for _, p := range res.Imported {
		fmt.Fprintf(e.stdout, "imported %s\n", p)
	}
	for _, d := range res.Decisions {
		if d.OnPin {
			continue
		}
		fmt.Fprintf(e.stderr, "%s: admitted by %s: built by %s\n", d.Subject.Path, d.Policy, listOr(d.Built, "nobody"))
	}
	fmt.Fprintf(e.stderr, "imported %d paths (%d present already), %d attestations added, %.1f MB of layers in %s\n", len(res.Imported), len(res.Present), res.Kept, float64(res.Bytes)/1e6, time.Since(start).Round(time.Millisecond))
	return nil
}

// trustPolicies returns the trust policies that admission must meet: the
// store owner's (STORE/config.cue) and those of files.
func trustPolicies(e *env, st *store.Store, files []string) ([]*trust.Policy, error) {
	owner, err := ownerConfig(e, st)
	if err != nil {
		return nil, err
	}
	out := owner.Trust
	for _, f := range files {
		ps, err := policy.LoadTrust(e.cwd, absPath(e.cwd, f))
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

// ownerConfig reads the store owner's configuration, STORE/config.cue
// (heph.#StoreConfig), refused if anyone but its owner may write it; a
// store without one has an empty configuration.
func ownerConfig(e *env, st *store.Store) (*policy.StoreConfig, error) {
	file := filepath.Join(st.Dir, OwnerConfigFile)
	fi, err := os.Lstat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return &policy.StoreConfig{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := checkOwnerOnly(file, fi); err != nil {
		return nil, err
	}
	sc, err := policy.LoadStoreConfig(e.cwd, file)
	if err != nil {
		return nil, err
	}
	for _, p := range sc.Trust {
		p.Source = "the store owner's policy (" + srcpos.RelPath(e.cwd, file) + ")"
	}
	return sc, nil
}

// checkOwnerOnly refuses a file that anyone but its owner (this user or
// root) may change: it says what the store admits.
func checkOwnerOnly(file string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: the store owner's configuration is not a regular file", file)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s: the store owner's configuration is writable by others (mode %04o): refused; chmod go-w it", file, fi.Mode().Perm())
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s: the store owner's configuration belongs to uid %d, not to this user or root: refused", file, sys.Uid)
	}
	return nil
}

func listOr(xs []string, none string) string {
	if len(xs) == 0 {
		return none
	}
	s := xs[0]
	for _, x := range xs[1:] {
		s += ", " + x
	}
	return s
}

// layoutDir returns the layout directory of arg: arg itself, or where the
// tar file arg (hephc export -o) was extracted to, removed by cleanup.
func layoutDir(arg string) (dir string, cleanup func(), err error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return "", nil, fmt.Errorf("importing: %w", err)
	}
	if fi.IsDir() {
		return arg, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "hephc-import-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	f, err := os.Open(arg)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	defer f.Close()
	if err := archive.ExtractLayoutTar(f, tmp, archive.DefaultLimits.MaxBytes); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("importing %s: %w", arg, err)
	}
	return tmp, cleanup, nil
}
