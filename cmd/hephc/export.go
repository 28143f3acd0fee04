package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/trust"
)

func init() {
	register(&command{
		name:    "export",
		args:    "[--closure] [--no-attestations] PATH… DIR | -o FILE.tar PATH…",
		summary: "write store paths as an OCI image layout in DIR: one reproducible layer per path, attestations as referrers",
		flags: func(fs *pflag.FlagSet) {
			fs.Bool("closure", false, "export the paths' closure too")
			fs.Bool("no-attestations", false, "leave the paths' attestations out")
			fs.StringP("output", "o", "", "write the layout as one tar file (an oci-archive) instead of a directory")
		},
		run: runExport,
	})
}

func runExport(e *env, fs *pflag.FlagSet, args []string) error {
	closure, _ := fs.GetBool("closure")
	noAtt, _ := fs.GetBool("no-attestations")
	out, _ := fs.GetString("output")
	if out == "" && len(args) < 2 {
		return usagef("want store paths and the directory to write")
	}
	if out != "" && len(args) < 1 {
		return usagef("want store paths")
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	dir := ""
	if out == "" {
		dir, args = absPath(e.cwd, args[len(args)-1]), args[:len(args)-1]
	} else {
		tmp, err := os.MkdirTemp("", "hephc-export-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = filepath.Join(tmp, "oci")
	}
	paths, err := closureArgs(ctx, e, st, args, closure)
	if err != nil {
		return err
	}
	opts := archive.ExportOptions{}
	if !noAtt {
		opts.Attestations = trust.StoreDir(st.Dir)
	}
	start := time.Now()
	res, err := archive.Export(ctx, st, paths, dir, opts)
	if err != nil {
		return err
	}
	if out != "" {
		if err := writeLayoutTar(absPath(e.cwd, out), dir); err != nil {
			return err
		}
	}
	for _, en := range res.Entries {
		fmt.Fprintf(e.stdout, "%s %s\n", en.Layer.Digest, en.Path)
	}
	fmt.Fprintf(e.stderr, "exported %d paths and %d attestations, %.1f MB of layers in %s\n", len(res.Entries), res.Attestations, float64(res.Bytes)/1e6, time.Since(start).Round(time.Millisecond))
	return nil
}

// writeLayoutTar writes the layout in dir as the tar file out, through a
// temporary file renamed into place.
func writeLayoutTar(out, dir string) error {
	f, err := os.CreateTemp(filepath.Dir(out), ".export-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = archive.WriteLayoutTar(f, dir)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(f.Name(), out)
}
