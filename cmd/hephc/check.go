package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/pipeline"
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

// checkReport is check's --json output. Errors are what stopped the
// check (the configuration does not evaluate, a policy does not load):
// then nothing was checked.
type checkReport struct {
	Policies    []string               `json:"policies"`
	Derivations int                    `json:"derivations"`
	Violations  []policy.JSONViolation `json:"violations"`
	Errors      []lang.JSONDiagnostic  `json:"errors,omitempty"`
}

func runCheck(e *env, fs *pflag.FlagSet, args []string) error {
	asJSON, _ := fs.GetBool("json")
	err := check(e, fs, args, asJSON)
	if err == nil || !asJSON {
		return err
	}
	if _, ok := err.(silentError); ok {
		return err
	}
	return failJSON(e, checkReport{Policies: []string{}, Violations: []policy.JSONViolation{}, Errors: lang.DiagnoseIn(e.cwd, err).JSON()})
}

func check(e *env, fs *pflag.FlagSet, args []string, asJSON bool) error {
	attr, _ := fs.GetString("attr")
	policyFiles, _ := fs.GetStringArray("policy")
	// The cache would say only that the graph passed, not which policies
	// it passed: check evaluates every time.
	g, set, err := evaluate(e, evaluation{attr: attr, args: args, policy: true, policyFiles: policyFiles})
	var vs policy.Violations
	if err != nil && !errors.As(err, &vs) {
		return err
	}
	// The built images' sizes too, so that one run reports everything.
	sizes, unbuilt, err := checkBuiltSizes(e, g)
	if err != nil {
		return err
	}
	vs = vs.Merge(sizes)
	tests, untested, err := checkTestResults(e, g) // test.go
	if err != nil {
		return err
	}
	vs = vs.Merge(tests)
	if asJSON {
		rep := checkReport{Violations: vs.JSON(e.cwd), Derivations: len(g.Nodes), Policies: set.Sources()}
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
	if len(vs) > 0 {
		return vs
	}
	if err := printCheck(e, g, set, unbuilt); err != nil {
		return err
	}
	if untested > 0 {
		fmt.Fprintf(e.stdout, "tests: %s wait for what they test to be built (realize runs them)\n", plural(untested, "required test"))
	}
	return nil
}

// checkBuiltSizes checks the size limits of the images already in the
// store, when there is one (check creates none), and says how many limits
// wait for their image to be built.
func checkBuiltSizes(e *env, g *eval.Graph) (policy.Violations, int, error) {
	ls, err := pipeline.SizeLimits(g)
	if err != nil || len(ls) == 0 {
		return nil, 0, err
	}
	dir, err := storeDir(e)
	if err != nil {
		return nil, 0, err
	}
	if _, err := os.Stat(filepath.Join(dir, store.DBFile)); err != nil {
		return nil, len(ls), nil
	}
	st, err := openStore(e)
	if err != nil {
		return nil, 0, err
	}
	defer st.Close()
	return policy.CheckSizes(ls, closureSize(st))
}

func printCheck(e *env, g *eval.Graph, set *policy.Set, unbuilt int) error {
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
	if unbuilt > 0 {
		fmt.Fprintf(e.stdout, "closure sizes: %s wait for images to be built (realize checks them)\n", plural(unbuilt, "limit"))
	}
	return nil
}

// checkSizes enforces the policy's size limits on the images of g that
// st holds.
func checkSizes(st *store.Store, g *eval.Graph) error {
	ls, err := pipeline.SizeLimits(g)
	if err != nil || len(ls) == 0 {
		return err
	}
	vs, _, err := policy.CheckSizes(ls, closureSize(st))
	if err != nil {
		return err
	}
	if vs != nil {
		return vs
	}
	return nil
}

// closureSize measures runtime closures in st.
func closureSize(st *store.Store) policy.ClosureSize {
	ctx := context.Background()
	return func(p store.Path) (int64, bool, error) {
		valid, err := st.ValidPaths(ctx, []store.Path{p})
		if err != nil || !valid[p] {
			return 0, false, err
		}
		total, err := st.ClosureSize(ctx, p)
		if err != nil {
			return 0, false, err
		}
		return total, true, nil
	}
}
