package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/policy"
)

func init() {
	register(&command{
		name:    "check",
		args:    "[--policy FILE]… [-A ATTR] [--json] [FILE.cue…|DIR]",
		summary: "evaluate the configuration and enforce its policies; build nothing",
		flags: func(fs *pflag.FlagSet) {
			fs.StringP("attr", "A", "", "check only this attribute's graph, e.g. images.workstation")
			fs.Bool("json", false, "print the policies and every violation as JSON")
			policyFlag(fs)
		},
		run: runCheck,
	})
}

// checkReport is check's --json output.
type checkReport struct {
	Policies    []string               `json:"policies"`
	Derivations int                    `json:"derivations"`
	Violations  []policy.JSONViolation `json:"violations"`
}

func runCheck(e *env, fs *pflag.FlagSet, args []string) error {
	attr, _ := fs.GetString("attr")
	asJSON, _ := fs.GetBool("json")
	policyFiles, _ := fs.GetStringArray("policy")
	// The cache would say only that the graph passed, not which policies
	// it passed: check evaluates every time.
	g, set, err := evaluate(e, evaluation{attr: attr, args: args, policy: true, policyFiles: policyFiles})
	var vs policy.Violations
	if err != nil && !asJSON {
		return err
	}
	if err != nil {
		var ok bool
		if vs, ok = err.(policy.Violations); !ok {
			return err
		}
	}
	if asJSON {
		rep := checkReport{Violations: vs.JSON(e.cwd)}
		if set != nil {
			rep.Derivations = len(g.Nodes)
			rep.Policies = set.Sources()
		}
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", b)
		if len(vs) > 0 {
			return silentError{}
		}
		return nil
	}
	return printCheck(e, g, set)
}

func printCheck(e *env, g *eval.Graph, set *policy.Set) error {
	sources := set.Sources()
	if len(sources) == 0 {
		fmt.Fprintf(e.stdout, "%s, no policy: nothing to enforce (write %s beside the configuration, or give --policy)\n", plural(len(g.Nodes), "derivation"), policy.DefaultFile)
		return nil
	}
	what := "1 policy"
	if len(sources) > 1 {
		what = fmt.Sprintf("%d policies", len(sources))
	}
	verb := "satisfy"
	if len(g.Nodes) == 1 {
		verb = "satisfies"
	}
	fmt.Fprintf(e.stdout, "%s %s %s: %s\n", plural(len(g.Nodes), "derivation"), verb, what, strings.Join(sources, ", "))
	return nil
}
