package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "gc",
		args:    "[--dry-run] [--keep-generations N] [--older-than AGE] [--json]",
		summary: "delete every store path that no generation, ./result link or running realization keeps alive",
		flags: func(fs *pflag.FlagSet) {
			fs.Bool("dry-run", false, "say what would be deleted; delete nothing")
			fs.Int("keep-generations", 0, "first delete each profile's generations but the newest N (never the current one)")
			fs.String("older-than", "", "first delete generations older than AGE, e.g. 30d, 2w, 12h (never the current one); with --keep-generations, only those both select")
			fs.Bool("json", false, "print what was deleted as JSON")
		},
		run: runGC,
	})
}

// jsonGC is what `gc --json` prints.
type jsonGC struct {
	DryRun      bool               `json:"dryRun"`
	Deleted     []jsonDeleted      `json:"deleted"`
	Freed       int64              `json:"freed"`
	Live        int                `json:"live"`
	Generations []jsonGenerationID `json:"generations"`
	StaleRoots  []string           `json:"staleRoots"`
	Leftovers   []string           `json:"leftovers"`
	StaleLocks  []string           `json:"staleLocks"`
}

type jsonGenerationID struct {
	Profile string `json:"profile"`
	Number  int    `json:"number"`
}

type jsonDeleted struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

func runGC(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("takes no arguments")
	}
	var opts store.GCOptions
	opts.DryRun, _ = fs.GetBool("dry-run")
	asJSON, _ := fs.GetBool("json")
	var keep int
	var olderThan time.Duration
	if fs.Changed("keep-generations") {
		keep, _ = fs.GetInt("keep-generations")
		if keep < 1 {
			return usagef("--keep-generations wants at least 1, got %d (the current generation is always kept)", keep)
		}
	}
	if s, _ := fs.GetString("older-than"); s != "" {
		age, err := parseAge(s)
		if err != nil {
			return usagef("--older-than: %v", err)
		}
		olderThan = age
	}
	opts.Waiting = func() { fmt.Fprintln(e.stderr, "waiting for running realizations to end…") }

	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if opts.Expire, err = profile.Expired(ctx, st, keep, olderThan); err != nil {
		return err
	}
	opts.Background = true // the report is printed while the files go (res.Wait)
	res, err := st.GC(ctx, opts)
	if err != nil {
		return err
	}
	if asJSON {
		if err := printGCJSON(e, res, opts.DryRun); err != nil {
			return err
		}
		return res.Wait()
	}
	if opts.DryRun {
		printGCDryRun(e, res)
		return nil
	}
	for _, g := range res.Generations {
		fmt.Fprintf(e.stderr, "deleted generation %d of profile %s\n", g.Number, g.Profile)
	}
	for _, l := range res.StaleRoots {
		fmt.Fprintf(e.stderr, "forgot the root %s: it no longer points at a valid path\n", l)
	}
	for _, l := range res.Leftovers {
		fmt.Fprintf(e.stderr, "removed the leftover %s\n", l)
	}
	if n := len(res.StaleLocks); n > 0 {
		fmt.Fprintf(e.stderr, "removed %d lock files of paths that are not valid\n", n)
	}
	for _, d := range res.Deleted {
		fmt.Fprintln(e.stdout, d.Path)
	}
	fmt.Fprintf(e.stderr, "deleted %d paths, freed %s; %d paths are live\n", len(res.Deleted), store.FormatSize(res.Freed), res.Live)
	return res.Wait()
}

func printGCDryRun(e *env, res *store.GCResult) {
	w := e.stdout
	for _, g := range res.Generations {
		fmt.Fprintf(w, "would delete generation %d of profile %s\n", g.Number, g.Profile)
	}
	if len(res.StaleRoots) > 0 {
		fmt.Fprintf(w, "would forget %d roots that no longer point at a valid path:\n", len(res.StaleRoots))
		for _, l := range res.StaleRoots {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if len(res.Leftovers) > 0 {
		fmt.Fprintf(w, "would remove %d leftovers:\n", len(res.Leftovers))
		for _, l := range res.Leftovers {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if n := len(res.StaleLocks); n > 0 {
		fmt.Fprintf(w, "would remove %d lock files of paths that are not valid\n", n)
	}
	if len(res.Deleted) == 0 {
		fmt.Fprintf(w, "nothing to delete: all %d paths are live\n", res.Live)
		return
	}
	fmt.Fprintf(w, "would delete %d paths (%s); %d paths are live:\n", len(res.Deleted), store.FormatSize(res.Freed), res.Live)
	for _, d := range res.Deleted {
		fmt.Fprintf(w, "  %s\n", d.Path)
	}
}

func printGCJSON(e *env, res *store.GCResult, dry bool) error {
	out := jsonGC{
		DryRun: dry, Freed: res.Freed, Live: res.Live,
		Deleted: []jsonDeleted{}, Generations: []jsonGenerationID{},
		StaleRoots: append([]string{}, res.StaleRoots...), Leftovers: append([]string{}, res.Leftovers...),
		StaleLocks: append([]string{}, res.StaleLocks...),
	}
	for _, d := range res.Deleted {
		out.Deleted = append(out.Deleted, jsonDeleted{d.Path.String(), d.Size})
	}
	for _, g := range res.Generations {
		out.Generations = append(out.Generations, jsonGenerationID{g.Profile, g.Number})
	}
	b, err := eval.MarshalIndent(out)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(b)
	return err
}

var ageRE = regexp.MustCompile(`^([0-9]+)([dw])$`)

// parseAge parses an age: a number of days (30d) or weeks (2w), or a Go
// duration (12h, 90m).
func parseAge(s string) (time.Duration, error) {
	var d time.Duration
	if m := ageRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 100000 {
			return 0, fmt.Errorf("%q is too long", s)
		}
		d = time.Duration(n) * 24 * time.Hour
		if m[2] == "w" {
			d *= 7
		}
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q is not an age such as 30d, 2w or 12h", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not a positive age", s)
	}
	return d, nil
}
