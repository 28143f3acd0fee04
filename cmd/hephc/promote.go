package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/channel"
)

func init() {
	register(&command{
		name:    "promote",
		args:    "--server URL ATTR VERSION | --all",
		summary: "promote a package version from testing to stable by hand, where the rules allow (maintainer)",
		flags: func(fs *pflag.FlagSet) {
			clientFlags(fs)
			fs.Bool("all", false, "every version waiting in testing whose rules hold")
			fs.String("reason", "", "why (kept with the decision)")
		},
		run: runPromote,
	})
}

func runPromote(e *env, fs *pflag.FlagSet, args []string) error {
	all, _ := fs.GetBool("all")
	reason, _ := fs.GetString("reason")
	if all != (len(args) == 0) || (!all && len(args) != 2) {
		return usagef("want ATTR VERSION, or --all")
	}
	c, err := serverClient(e, fs, "", "")
	if err != nil {
		return err
	}
	ctx := context.Background()
	type pv struct{ attr, version string }
	var todo []pv
	if all {
		chs, err := c.Channels(ctx)
		if err != nil {
			return serverError(c, err)
		}
		seen := map[pv]bool{}
		for _, ch := range chs {
			if ch.Name != channel.Testing {
				continue
			}
			for _, en := range ch.Entries {
				if k := (pv{en.Attr, en.Version}); !seen[k] {
					seen[k] = true
					todo = append(todo, k)
				}
			}
		}
		if len(todo) == 0 {
			fmt.Fprintln(e.stderr, "nothing waits in testing")
			return nil
		}
	} else {
		todo = []pv{{args[0], args[1]}}
	}
	var refused []string
	for _, p := range todo {
		d, err := c.Promote(ctx, p.attr, p.version, reason)
		if err != nil {
			err = serverError(c, err)
			fmt.Fprintf(e.stderr, "not promoted: %v\n", err)
			refused = append(refused, p.attr+" "+p.version)
			continue
		}
		fmt.Fprintf(e.stdout, "promoted %s %s to stable: %s\n", d.Attr, d.Version, strings.Join(d.Held, "; "))
	}
	if len(refused) > 0 {
		return fmt.Errorf("%d of %d not promoted: %s", len(refused), len(todo), strings.Join(refused, ", "))
	}
	return nil
}
