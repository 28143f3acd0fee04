package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/realize"
)

// maxDifferencesShown is how many differing files realize --check names
// per path; the rest are counted.
const maxDifferencesShown = 50

// runRealizeCheck is realize --check: each selected derivation (its
// output realized first, if it is not valid) is rebuilt — refetched, for
// a fixed-output one — in a fresh sandbox into scratch, and compared with
// the store's; the store's path is never replaced. The same content is a
// reproduction, attested with the store owner's signingKey when there is
// one; a different one names the differing files and the first differing
// byte of each, keeps the rebuild, prints the diffoscope command, and is
// exit code 1.
func runRealizeCheck(e *env, fs *pflag.FlagSet, args []string) error {
	if dry, _ := fs.GetBool("dry-run"); dry {
		return usagef("--check and --dry-run: choose one")
	}
	r, err := startRealizing(e, fs, args) // realize.go
	if err != nil {
		return err
	}
	defer r.release()
	st, sg, roots, ctx := r.st, r.sg, r.roots, r.ctx
	att, key, err := ownerAttester(e, st)
	if err != nil {
		return err
	}
	prog := newProgress(e)
	opts := realize.Options{Jobs: r.jobs, FetchJobs: r.fetches, Timeout: r.timeout, Getenv: e.getenv, Events: prog.event, SourceDir: configDir(e, args), Attester: att}
	_, err = realize.Realize(ctx, st, sg, roots, opts)
	prog.finish()
	if err != nil {
		return err
	}
	opts.Events = nil
	failed := 0
	for _, h := range roots {
		p := sg.PathOf(h)
		fmt.Fprintf(e.stderr, "rebuilding %s\n", p)
		r, err := realize.CheckPath(ctx, st, sg, h, opts)
		if err != nil {
			return err
		}
		if r.Reproduced() {
			fmt.Fprintf(e.stdout, "reproduced %s %s\n", p, r.Recorded)
			continue
		}
		failed++
		printCheckFailure(e, st.Physical(p), r)
	}
	switch {
	case failed > 0:
		return fmt.Errorf("%d of %d paths did not reproduce", failed, len(roots))
	case key != nil:
		fmt.Fprintf(e.stderr, "%d paths reproduced: attested as %s (%s)\n", len(roots), key.Name, key.Public().ID())
	default:
		fmt.Fprintf(e.stderr, "%d paths reproduced; not attested: the store's %s names no signingKey\n", len(roots), OwnerConfigFile)
	}
	return nil
}

// printCheckFailure says how the rebuild r of the path at stored differs,
// and how to compare the two trees.
func printCheckFailure(e *env, stored string, r *realize.CheckResult) {
	switch {
	case r.Rebuilt != r.Recorded:
		fmt.Fprintf(e.stdout, "%s: not reproducible: the rebuild hashes to %s, the store has %s\n", r.Path, r.Rebuilt, r.Recorded)
	default:
		fmt.Fprintf(e.stdout, "%s: the refetch is the stored content, but not its pin: %v\n", r.Path, r.PinErr)
	}
	for i, d := range r.Differences {
		if i == maxDifferencesShown {
			fmt.Fprintf(e.stdout, "\t… and %d more\n", len(r.Differences)-i)
			break
		}
		fmt.Fprintf(e.stdout, "\t%s\n", d)
	}
	if r.Kept != "" {
		fmt.Fprintf(e.stdout, "\tboth trees kept (the rebuild until the next hephc gc); compare them with:\n\t%s\n", shellQuote([]string{"diffoscope", stored, r.Kept}))
	}
	fmt.Fprintf(e.stdout, "\tthe rebuild's log: %s\n", r.Log)
}
