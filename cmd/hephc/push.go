package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

func init() {
	register(&command{
		name:    "push",
		args:    "--to oci://HOST/REPOSITORY [--only] [--no-attestations] PATH… | [-A ATTR] FILE.cue…|DIR",
		summary: "push store paths and their closure to an OCI registry (the binary cache), attestations as referrers",
		flags: func(fs *pflag.FlagSet) {
			fs.String("to", "", "the repository, oci://HOST[:PORT]/REPOSITORY (oci+http:// for plain HTTP to a host that is not loopback); credentials from ~/.docker/config.json")
			fs.Bool("only", false, "push only the paths given, not their closure")
			fs.StringP("attr", "A", "", "with a configuration: push only what this attribute needs")
			fs.Bool("no-attestations", false, "leave the paths' attestations out")
			fs.IntP("jobs", "j", 4, "uploads at once")
		},
		run: runPush,
	})
}

func runPush(e *env, fs *pflag.FlagSet, args []string) error {
	to, _ := fs.GetString("to")
	only, _ := fs.GetBool("only")
	noAtt, _ := fs.GetBool("no-attestations")
	jobs, _ := fs.GetInt("jobs")
	if to == "" {
		return usagef("want --to oci://HOST/REPOSITORY")
	}
	attr, _ := fs.GetString("attr")
	if len(args) == 0 {
		return usagef("want store paths, or a configuration, to push")
	}
	ref, err := registry.ParseRef(to)
	if err != nil {
		return usagef("%v", err)
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	var paths []store.Path
	if _, perr := pathArg(e, st, args[0]); perr == nil && attr == "" {
		paths, err = closureArgs(ctx, e, st, args, !only)
	} else {
		paths, err = configPaths(ctx, e, st, attr, args, true)
	}
	if err != nil {
		return err
	}
	opts := registry.PushOptions{Jobs: jobs}
	if !noAtt {
		opts.Attestations = trust.StoreDir(st.Dir)
	}
	start := time.Now()
	c := &registry.Client{}
	res, err := c.Push(ctx, st, paths, ref, opts)
	if err != nil {
		return err
	}
	for _, en := range res.Pushed {
		fmt.Fprintf(e.stdout, "%s %s\n", en.Manifest.Digest, en.Path)
	}
	for _, en := range res.Present {
		fmt.Fprintf(e.stdout, "%s %s\n", en.Manifest.Digest, en.Path)
	}
	for _, cf := range res.Conflicts {
		fmt.Fprintf(e.stderr, "hephc: warning: %s: %s holds other bytes (manifest %s, this store's %s): left as they are\n", cf.Path, ref, cf.Theirs, cf.Ours)
	}
	fmt.Fprintf(e.stderr, "pushed %d paths (%d there already) and %d attestations to %s: %s of layers, %s sent, in %s\n",
		len(res.Pushed), len(res.Present), res.Attestations, ref, store.FormatSize(res.LayerBytes), store.FormatSize(res.Uploaded), time.Since(start).Round(time.Millisecond))
	return nil
}

// configPaths returns the outputs of every derivation the configuration
// (or its attribute attr) needs, build-time ones too: what another store
// substitutes so as to realize it building nothing. Each must be valid.
// withTests adds the results of the tests its policy requires that
// passed here (push; publish sends them as signed statements instead).
func configPaths(ctx context.Context, e *env, st *store.Store, attr string, args []string, withTests bool) ([]store.Path, error) {
	g, _, err := evaluate(e, evaluation{attr: attr, args: args, policy: true, useCache: true})
	if err != nil {
		return nil, err
	}
	sg := pipeline.StoreGraph(g)
	order, err := sg.Closure(pipeline.RootHashes(g)...)
	if err != nil {
		return nil, err
	}
	paths := make([]store.Path, len(order))
	for i, h := range order {
		paths[i] = sg.PathOf(h)
	}
	valid, err := st.ValidPaths(ctx, paths)
	if err != nil {
		return nil, err
	}
	var missing int
	for _, p := range paths {
		if !valid[p] {
			missing++
		}
	}
	if missing > 0 {
		return nil, fmt.Errorf("%d of the %d paths the configuration needs are not in the store %s: hephc realize it first", missing, len(paths), st.Dir)
	}
	if !withTests {
		return paths, nil
	}
	// The results of the tests its policy requires, where they passed
	// here, so that a store realizing it from the cache need not run them
	// again (substitute.go); admitted there, like any path, by its trust
	// policy.
	tests, err := policyTests(g) // test.go
	if err != nil {
		return nil, err
	}
	results := make([]store.Path, len(tests))
	for i, t := range tests {
		results[i] = t.Path()
	}
	passed, err := st.ValidPaths(ctx, results)
	if err != nil {
		return nil, err
	}
	have := make(map[store.Path]bool, len(paths))
	for _, p := range paths {
		have[p] = true
	}
	var without int
	for _, r := range results {
		if !passed[r] {
			without++
			continue
		}
		closure, err := st.Closure(ctx, r)
		if err != nil {
			return nil, err
		}
		for _, p := range closure {
			if !have[p] {
				have[p] = true
				paths = append(paths, p)
			}
		}
	}
	if without > 0 {
		verb := "have"
		if without == 1 {
			verb = "has"
		}
		fmt.Fprintf(e.stderr, "hephc: %s the policy requires %s no passing result in the store: not pushed (hephc test runs them)\n", plural(without, "test"), verb)
	}
	return paths, nil
}
