package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
)

func init() {
	register(&command{
		name:    "show-derivation",
		args:    "HASH|STORE-PATH|ATTR [FILE.cue…|DIR]",
		summary: "show one derivation of the configuration as JSON, with its canonical encoding",
		run:     runShowDerivation,
	})
}

// shownDerivation is a derivation as show-derivation prints it: what eval
// --json gives, plus the exact bytes its hash is computed over.
type shownDerivation struct {
	*eval.JSONDerivation
	Canonical string `json:"canonical"`
}

func runShowDerivation(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("want a derivation hash, store path or attribute")
	}
	want, cfgArgs := args[0], args[1:]
	g, _, err := evaluate(e, evaluation{args: cfgArgs, useCache: true})
	if err != nil {
		return err
	}
	n, ok := g.Lookup(want)
	if !ok {
		for _, node := range g.Nodes {
			if node.Attr == want {
				n, ok = node, true
			}
		}
		if h, isRoot := g.Roots[want]; isRoot {
			n, ok = g.Nodes[h], true
		}
	}
	if !ok {
		return fmt.Errorf("no derivation %s in the configuration (%d derivations; `hephc eval` lists the roots)", want, len(g.Nodes))
	}
	c, err := n.Drv.Canonical()
	if err != nil {
		return err
	}
	j := g.JSON(posIn(e))
	out := map[string]shownDerivation{
		n.Path().String(): {JSONDerivation: j.Derivations[n.Path().String()], Canonical: string(c)},
	}
	b, err := eval.MarshalIndent(out)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(b)
	return err
}
