package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/store"
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
	if err == nil {
		err = checkBuiltSizes(e, g)
	}
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

// checkBuiltSizes enforces the size limits on images already in the
// store, when there is a store (check creates none).
func checkBuiltSizes(e *env, g *eval.Graph) error {
	if len(g.Deferred) == 0 {
		return nil
	}
	dir, err := storeDir(e)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); err != nil {
		return nil
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	return checkSizes(st, g)
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

// sizeLimits returns the policy rules g holds that apply once images are
// built.
func sizeLimits(g *eval.Graph) ([]policy.SizeLimit, error) {
	if len(g.Deferred) == 0 {
		return nil, nil
	}
	var ls []policy.SizeLimit
	if err := json.Unmarshal(g.Deferred, &ls); err != nil {
		return nil, fmt.Errorf("reading the policy's size limits: %w", err)
	}
	return ls, nil
}

// checkSizes enforces the policy's size limits on the images of g that
// st holds.
func checkSizes(st *store.Store, g *eval.Graph) error {
	ls, err := sizeLimits(g)
	if err != nil || len(ls) == 0 {
		return err
	}
	ctx := context.Background()
	vs, err := policy.CheckSizes(ls, func(p store.Path) (int64, bool, error) {
		valid, err := st.ValidPaths(ctx, []store.Path{p})
		if err != nil || !valid[p] {
			return 0, false, err
		}
		closure, err := st.Closure(ctx, p)
		if err != nil {
			return 0, false, err
		}
		var total int64
		for _, q := range closure {
			info, ok, err := st.QueryPathInfo(ctx, q)
			if err != nil {
				return 0, false, err
			}
			if ok {
				total += info.Size
			}
		}
		return total, true, nil
	})
	if err != nil {
		return err
	}
	if vs != nil {
		return vs
	}
	return nil
}
