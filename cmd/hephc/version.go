package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/pipeline"
)

func init() {
	register(&command{
		name:    "version",
		args:    "",
		summary: "print hephc's version",
		run:     runVersion,
	})
}

func runVersion(e *env, _ *pflag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("takes no arguments")
	}
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	fmt.Fprintf(e.stdout, "hephc %s %s %s/%s build %s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, pipeline.BuildID()[:12])
	return nil
}
