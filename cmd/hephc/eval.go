package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
)

func init() {
	register(&command{
		name:    "eval",
		args:    "[-A ATTR] [--json] [FILE.cue…|DIR]",
		summary: "evaluate the configuration into its derivation graph and show it",
		flags: func(fs *pflag.FlagSet) {
			fs.StringP("attr", "A", "", "evaluate only this attribute, e.g. images.workstation")
			fs.Bool("json", false, "print the whole graph as JSON (roots and derivations, sorted)")
			fs.Bool("no-cache", false, "evaluate even when the evaluation cache has the graph")
			policyFlag(fs)
		},
		run: runEval,
	})
}

func runEval(e *env, fs *pflag.FlagSet, args []string) error {
	attr, _ := fs.GetString("attr")
	asJSON, _ := fs.GetBool("json")
	noCache, _ := fs.GetBool("no-cache")
	policyFiles, _ := fs.GetStringArray("policy")
	g, _, err := evaluate(e, evaluation{attr: attr, args: args, policy: true, policyFiles: policyFiles, useCache: !noCache})
	if err != nil {
		return err
	}
	if asJSON {
		b, err := eval.MarshalIndent(g.JSON(posIn(e)))
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(b)
		return err
	}
	return printSummary(e, g)
}

// evaluation is what evaluate is asked for.
type evaluation struct {
	attr string
	args []string
	// policy enforces the configuration's policies (its policy field,
	// policy.cue beside it) and those of policyFiles.
	policy      bool
	policyFiles []string
	useCache    bool
}

// evaluate loads the configuration named by args, builds its graph and
// enforces its policies, through the evaluation cache when useCache is
// set. The policies checked are returned unless the graph came from the
// cache (where only a graph that passed is kept).
func evaluate(e *env, ev evaluation) (*eval.Graph, *policy.Set, error) {
	req := eval.Request{Build: buildID(), Attr: ev.attr, Policy: ev.policy}
	for _, a := range ev.args {
		req.Args = append(req.Args, absPath(e.cwd, a))
	}
	if len(ev.args) == 0 {
		req.Args = []string{e.cwd}
	}
	for _, f := range ev.policyFiles {
		req.PolicyFiles = append(req.PolicyFiles, absPath(e.cwd, f))
	}
	cache := &eval.Cache{Dir: filepath.Join(cacheDir(e), "eval")}
	if ev.useCache {
		if g, ok := cache.Get(req); ok {
			return g, nil, nil
		}
	}
	started := time.Now()
	l := lang.NewLoader(e.cwd)
	cfg, err := l.Load(ev.args...)
	if err != nil {
		return nil, nil, err
	}
	g, err := eval.Build(cfg.Value, eval.Options{Attr: ev.attr})
	if err != nil {
		return nil, nil, err
	}
	deps, dirs := cfg.Deps, cfg.Dirs
	var set *policy.Set
	if ev.policy {
		set, err = policy.Load(l, cfg, policy.Files(cfg, req.PolicyFiles))
		if err != nil {
			return nil, nil, err
		}
		res, err := policy.Check(cfg.Value, g, set)
		if err != nil {
			return nil, nil, err
		}
		if len(res.Limits) > 0 {
			if g.Deferred, err = json.Marshal(res.Limits); err != nil {
				return nil, nil, err
			}
		}
		if res.Violations != nil {
			return g, set, res.Violations // the graph, policies and limits for check
		}
		deps, dirs = union(deps, set.Deps), union(dirs, set.Dirs)
	}
	if eval.ChangedSince(started, deps, dirs) {
		return g, set, nil // edited while it was read: not cached
	}
	if err := cache.Put(req, deps, dirs, g); err != nil {
		fmt.Fprintf(e.stderr, "hephc: warning: %v\n", err)
	}
	return g, set, nil
}

// union returns the sorted union of two sorted lists.
func union(a, b []string) []string {
	out := append(append([]string(nil), a...), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// policyFlag adds --policy, for the commands that enforce policy.
func policyFlag(fs *pflag.FlagSet) {
	fs.StringArray("policy", nil, "also enforce the policy in `FILE` (repeatable); policy.cue beside the configuration is always enforced")
}

func posIn(e *env) func(eval.Pos) string {
	return func(p eval.Pos) string {
		return fmt.Sprintf("%s:%d:%d", lang.RelPath(e.cwd, p.File), p.Line, p.Col)
	}
}

// printSummary lists the roots that are built, then counts the pinned
// sources (fixed-output roots), which --json lists.
func printSummary(e *env, g *eval.Graph) error {
	fods := 0
	for _, n := range g.Nodes {
		if n.Drv.IsFixedOutput() {
			fods++
		}
	}
	fmt.Fprintf(e.stdout, "%s (%d fixed-output), %s\n", plural(len(g.Nodes), "derivation"), fods, plural(len(g.Roots), "root"))
	if len(g.Roots) > pinnedRoots(g) {
		fmt.Fprintln(e.stdout)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	pinned := 0
	for _, attr := range g.RootNames() {
		n := g.Nodes[g.Roots[attr]]
		if n.Drv.IsFixedOutput() {
			pinned++
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", attr, n.Path(), n.Drv.Builder)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if pinned > 0 {
		fmt.Fprintf(e.stdout, "\nand %d pinned sources (fixed-output roots); --json lists everything\n", pinned)
	}
	return nil
}

func pinnedRoots(g *eval.Graph) int {
	n := 0
	for _, h := range g.Roots {
		if g.Nodes[h].Drv.IsFixedOutput() {
			n++
		}
	}
	return n
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
