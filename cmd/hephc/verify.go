package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "verify",
		args:    "[--repair | --rebuild-db] [-j N] [STORE-PATH…] | --trust FILE.cue | --manifest DIR [--threshold N]",
		summary: "re-hash every registered path (or those given) and report each whose content no longer matches the database",
		flags: func(fs *pflag.FlagSet) {
			fs.Bool("repair", false, "restore modes, owners and records in place, and rebuild (or refetch) each path whose content does not verify, putting it back if the result matches")
			fs.Bool("rebuild-db", false, "rebuild a lost or corrupt database from the store's records on disk (the old one is moved aside)")
			fs.IntP("jobs", "j", runtime.NumCPU(), "paths to hash (and builds to run) at once")
			verifyTrustFlags(fs) // verifytrust.go: --trust, --manifest
		},
		run: runVerify,
	})
}

func runVerify(e *env, fs *pflag.FlagSet, args []string) error {
	if done, err := verifyTrust(e, fs, args); done {
		return err
	}
	repair, _ := fs.GetBool("repair")
	rebuild, _ := fs.GetBool("rebuild-db")
	jobs, _ := fs.GetInt("jobs")
	if jobs < 1 {
		return usagef("-j wants at least 1, got %d", jobs)
	}
	if rebuild {
		if repair || len(args) > 0 {
			return usagef("--rebuild-db takes neither --repair nor paths")
		}
		return runRebuildDB(e, jobs)
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
	var modified, missing, unsafe, records int
	for _, p := range problems {
		switch {
		case p.Missing():
			missing++
		case p.Modified() || p.Err != nil:
			modified++
		}
		if len(p.Deviations) > 0 {
			unsafe++
		}
		if p.Record != nil {
			records++
		}
	}
	summary := fmt.Sprintf("checked %d paths: %d modified, %d missing", checked, modified, missing)
	if unsafe > 0 {
		summary += fmt.Sprintf(", %d with unsafe modes or owners", unsafe)
	}
	if records > 0 {
		summary += fmt.Sprintf(", %d whose record on disk is wrong", records)
	}
	fmt.Fprintln(e.stderr, summary)
	if !repair {
		return fmt.Errorf("%d of %d paths do not verify (hephc verify --repair rebuilds them)", len(problems), checked)
	}

	bad := make([]store.Path, len(problems))
	for i, p := range problems {
		bad[i] = p.Path
	}
	inPlace := map[store.Path]bool{}
	for _, p := range problems {
		inPlace[p.Path] = p.ContentIntact()
	}
	results, err := realize.Repair(ctx, st, bad, realize.Options{Jobs: jobs, Getenv: e.getenv})
	failed := 0
	for _, r := range results {
		var (
			nr *realize.NotRepairableError
			np *realize.NotReproducibleError
		)
		switch {
		case r.Err == nil && inPlace[r.Path]:
			fmt.Fprintf(e.stdout, "repaired %s (modes, owners and record restored in place)\n", r.Path)
			continue
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

// runRebuildDB rebuilds the store's database from its records on disk.
func runRebuildDB(e *env, jobs int) error {
	dir, err := storeDir(e)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := store.RebuildDB(ctx, dir, store.RebuildOptions{Jobs: jobs})
	if err != nil {
		return err
	}
	if res.Aside != "" {
		fmt.Fprintf(e.stderr, "moved the old database aside to %s\n", res.Aside)
	}
	for _, p := range res.Refused {
		fmt.Fprintf(e.stdout, "not restored: %s\n", p)
	}
	for _, u := range res.Unrecorded {
		fmt.Fprintf(e.stdout, "no record, not registered (gc removes it): %s\n", u)
	}
	fmt.Fprintf(e.stderr, "rebuilt %s: %d paths, %d derivations, %d generations, %d roots restored; %d records refused\n",
		filepath.Join(dir, store.DBFile), len(res.Registered), res.Derivations, res.Generations, res.Roots, len(res.Refused))
	return nil
}
