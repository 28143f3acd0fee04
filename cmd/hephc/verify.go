package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "verify",
		args:    "[--repair] [-j N] [STORE-PATH…]",
		summary: "re-hash every registered path (or those given) and report each whose content no longer matches the database",
		flags: func(fs *pflag.FlagSet) {
			fs.Bool("repair", false, "rebuild (or refetch) each path that does not verify and put it back if the result matches")
			fs.IntP("jobs", "j", runtime.NumCPU(), "paths to hash (and builds to run) at once")
		},
		run: runVerify,
	})
}

func runVerify(e *env, fs *pflag.FlagSet, args []string) error {
	repair, _ := fs.GetBool("repair")
	jobs, _ := fs.GetInt("jobs")
	if jobs < 1 {
		return usagef("-j wants at least 1, got %d", jobs)
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	paths, err := closureArgs(ctx, e, st, args, false)
	if err != nil {
		return err
	}

	problems, checked, err := realize.Verify(ctx, st, paths, realize.VerifyOptions{Jobs: jobs})
	if err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(e.stdout, p)
	}
	if len(problems) == 0 {
		fmt.Fprintf(e.stderr, "all %d paths verify\n", checked)
		return nil
	}
	missing := 0
	for _, p := range problems {
		if p.Missing() {
			missing++
		}
	}
	fmt.Fprintf(e.stderr, "checked %d paths: %d modified, %d missing\n", checked, len(problems)-missing, missing)
	if !repair {
		return fmt.Errorf("%d of %d paths do not verify (hephc verify --repair rebuilds them)", len(problems), checked)
	}

	bad := make([]store.Path, len(problems))
	for i, p := range problems {
		bad[i] = p.Path
	}
	results, err := realize.Repair(ctx, st, bad, realize.Options{Jobs: jobs, Getenv: e.getenv})
	failed := 0
	for _, r := range results {
		var (
			nr *realize.NotRepairableError
			np *realize.NotReproducibleError
		)
		switch {
		case r.Err == nil:
			fmt.Fprintf(e.stdout, "repaired %s\n", r.Path)
			continue
		case errors.As(r.Err, &nr) || errors.As(r.Err, &np):
			fmt.Fprintln(e.stdout, r.Err)
		default:
			fmt.Fprintf(e.stdout, "cannot repair %s: %v\n", r.Path, r.Err)
		}
		failed++
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d paths that did not verify could not be repaired", failed, len(problems))
	}
	fmt.Fprintf(e.stderr, "repaired %d paths\n", len(problems))
	return nil
}
