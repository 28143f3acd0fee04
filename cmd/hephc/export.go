package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/trust"
)

func init() {
	register(&command{
		name:    "export",
		args:    "[--closure] [--no-attestations] PATH… DIR",
		summary: "write store paths as an OCI image layout in DIR: one reproducible layer per path, attestations as referrers",
		flags: func(fs *pflag.FlagSet) {
			fs.Bool("closure", false, "export the paths' closure too")
			fs.Bool("no-attestations", false, "leave the paths' attestations out")
		},
		run: runExport,
	})
}

func runExport(e *env, fs *pflag.FlagSet, args []string) error {
	closure, _ := fs.GetBool("closure")
	noAtt, _ := fs.GetBool("no-attestations")
	if len(args) < 2 {
		return usagef("want store paths and the directory to write")
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	paths, err := pathArgs(ctx, e, st, args[:len(args)-1], closure)
	if err != nil {
		return err
	}
	opts := archive.ExportOptions{}
	if !noAtt {
		opts.Attestations = trust.StoreDir(st.Dir)
	}
	start := time.Now()
	res, err := archive.Export(ctx, st, paths, absPath(e.cwd, args[len(args)-1]), opts)
	if err != nil {
		return err
	}
	for _, en := range res.Entries {
		fmt.Fprintf(e.stdout, "%s %s\n", en.Layer.Digest, en.Path)
	}
	fmt.Fprintf(e.stderr, "exported %d paths and %d attestations, %.1f MB of layers in %s\n", len(res.Entries), res.Attestations, float64(res.Bytes)/1e6, time.Since(start).Round(time.Millisecond))
	return nil
}
