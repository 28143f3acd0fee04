package main

import (
	"fmt"
	"text/tabwriter"

	"cuelang.org/go/cue/token"
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
		},
		run: runEval,
	})
}

func runEval(e *env, fs *pflag.FlagSet, args []string) error {
	attr, _ := fs.GetString("attr")
	asJSON, _ := fs.GetBool("json")
	g, err := evaluate(e, attr, args)
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

// evaluate loads the configuration named by args and builds its graph.
func evaluate(e *env, attr string, args []string) (*eval.Graph, error) {
	l := lang.NewLoader(e.cwd)
	cfg, err := l.Load(args...)
	if err != nil {
		return nil, err
	}
	return eval.Build(cfg.Value, eval.Options{Attr: attr})
}

func posIn(e *env) func(token.Pos) string {
	return func(p token.Pos) string { return lang.FormatPos(e.cwd, p) }
}

func printSummary(e *env, g *eval.Graph) error {
	fods := 0
	for _, n := range g.Nodes {
		if n.Drv.IsFixedOutput() {
			fods++
		}
	}
	fmt.Fprintf(e.stdout, "%d derivations (%d fixed-output), %d roots\n\n", len(g.Nodes), fods, len(g.Roots))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, attr := range g.RootNames() {
		n := g.Nodes[g.Roots[attr]]
		fmt.Fprintf(tw, "%s\t%s\t%s\n", attr, n.Path(), n.Drv.Builder)
	}
	return tw.Flush()
}
