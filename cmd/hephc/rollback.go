package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/profile"
)

func init() {
	register(&command{
		name:    "rollback",
		args:    "[--to N] [--profile NAME]",
		summary: "make the previous generation (or generation N) current",
		flags: func(fs *pflag.FlagSet) {
			fs.String("profile", "system", "the profile")
			fs.Int("to", 0, "the generation to make current (default: the one before the current)")
		},
		run: runRollback,
	})
}

func runRollback(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("takes no arguments (use --to N)")
	}
	name, _ := fs.GetString("profile")
	to, _ := fs.GetInt("to")
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	if to == 0 {
		gens, err := profile.List(ctx, st, name)
		if err != nil {
			return err
		}
		cur := -1
		for i, g := range gens {
			if g.Current {
				cur = i
			}
		}
		if cur <= 0 {
			return fmt.Errorf("profile %s has no generation before the current one", name)
		}
		to = gens[cur-1].Number
	}
	g, err := profile.SetCurrent(ctx, st, name, to)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "profile %s: generation %d is current (%s)\n", name, g.Number, g.Toplevel)
	// boot follows the profile; ./result links stay what realize made.
	systems := systemsOf(g.Roots, st.Physical) // systems.go
	flag := ""
	if name != "system" {
		flag = " --profile " + name
	}
	switch len(systems) {
	case 0:
	case 1:
		fmt.Fprintf(e.stderr, "hephc boot%s boots its system %s\n", flag, systems[0].name)
	default:
		fmt.Fprintf(e.stderr, "hephc boot%s NAME boots its system NAME: %s\n", flag, systemList(systems))
	}
	return nil
}
