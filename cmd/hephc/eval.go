package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/srcpos"
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
	if err != nil && asJSON {
		return failJSON(e, jsonFailure{Errors: lang.DiagnoseIn(e.cwd, err).JSON()})
	}
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

// jsonFailure is what a command's --json prints when it fails before it
// has anything else to say: every error with its file, line, column,
// path and message, as lang.Report prints them.
type jsonFailure struct {
	Errors []lang.JSONDiagnostic `json:"errors"`
}

// failJSON prints doc, a command's --json report of its errors, on
// stdout; the command then fails (exit 1) with nothing more printed.
func failJSON(e *env, doc any) error {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n", b)
	return silentError{}
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

// evaluate runs the pipeline for a command: the configuration named by
// args, relative to the working directory, through hephc's cache. The
// policies checked are returned unless the graph came from the cache;
// with violations, the graph and policies come with the error (for
// check). Warnings are printed here.
func evaluate(e *env, ev evaluation) (*eval.Graph, *policy.Set, error) {
	res, err := pipeline.Evaluate(context.Background(), pipeline.Request{
		Dir: e.cwd, Args: ev.args, Attr: ev.attr,
		Policy: ev.policy, PolicyFiles: ev.policyFiles,
		CacheDir: pipeline.CacheDir(e.getenv), UseCache: ev.useCache,
	})
	if res == nil {
		return nil, nil, err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stderr, "hephc: warning: %v\n", w)
	}
	return res.Graph, res.Policies, err
}

// policyFlag adds --policy, for the commands that enforce policy.
func policyFlag(fs *pflag.FlagSet) {
	fs.StringArray("policy", nil, "also enforce the policy in `FILE` (repeatable); policy.cue beside the configuration is always enforced")
}

// posIn renders positions relative to the working directory.
func posIn(e *env) func(srcpos.Pos) string {
	return func(p srcpos.Pos) string { return p.Rel(e.cwd) }
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
	// tabwriter writes each cell and its padding on its own: buffered,
	// 10,000 roots are a few writes, not 60,000 system calls.
	out := bufio.NewWriterSize(e.stdout, 64<<10)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
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
	if err := out.Flush(); err != nil {
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
