package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
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
		},
		run: runEval,
	})
}

func runEval(e *env, fs *pflag.FlagSet, args []string) error {
	attr, _ := fs.GetString("attr")
	asJSON, _ := fs.GetBool("json")
	noCache, _ := fs.GetBool("no-cache")
	g, err := evaluate(e, attr, args, !noCache)
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

// evaluate loads the configuration named by args and builds its graph,
// through the evaluation cache when useCache is set.
func evaluate(e *env, attr string, args []string, useCache bool) (*eval.Graph, error) {
	req := eval.Request{Build: buildID(), Attr: attr}
	for _, a := range args {
		req.Args = append(req.Args, absPath(e.cwd, a))
	}
	if len(args) == 0 {
		req.Args = []string{e.cwd}
	}
	cache := &eval.Cache{Dir: filepath.Join(cacheDir(e), "eval")}
	if useCache {
		if g, ok := cache.Get(req); ok {
			return g, nil
		}
	}
	cfg, err := lang.NewLoader(e.cwd).Load(args...)
	if err != nil {
		return nil, err
	}
	g, err := eval.Build(cfg.Value, eval.Options{Attr: attr})
	if err != nil {
		return nil, err
	}
	if err := cache.Put(req, cfg.Deps, cfg.Dirs, g); err != nil {
		fmt.Fprintf(e.stderr, "hephc: warning: %v\n", err)
	}
	return g, nil
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
