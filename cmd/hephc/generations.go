package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "generations",
		args:    "[--profile NAME] [--json]",
		summary: "list a profile's generations: number, date, closure size, configuration hash and where it was, generation object",
		flags: func(fs *pflag.FlagSet) {
			fs.String("profile", "system", "the profile")
			fs.Bool("json", false, "print JSON")
		},
		run: runGenerations,
	})
}

// jsonGeneration is a generation as `generations --json` prints it.
type jsonGeneration struct {
	Number      int               `json:"number"`
	Current     bool              `json:"current"`
	Created     string            `json:"created"`
	Toplevel    string            `json:"toplevel"`
	Roots       map[string]string `json:"roots"`
	ClosureSize int64             `json:"closureSize"`
	ConfigHash  string            `json:"configHash"`
	Config      string            `json:"config"`
	// ConfigDir and ConfigFiles (relative to it) are where the
	// configuration was; absent for a generation recorded before they
	// were kept.
	ConfigDir   string   `json:"configDir,omitempty"`
	ConfigFiles []string `json:"configFiles,omitempty"`
}

func runGenerations(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("takes no arguments")
	}
	name, _ := fs.GetString("profile")
	asJSON, _ := fs.GetBool("json")
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	gens, err := profile.List(context.Background(), st, name)
	if err != nil {
		return err
	}
	if asJSON {
		out := []jsonGeneration{}
		for _, g := range gens {
			j := jsonGeneration{Number: g.Number, Current: g.Current, Created: time.Unix(g.Created, 0).UTC().Format(time.RFC3339),
				Toplevel: g.Toplevel.String(), Roots: map[string]string{}, ClosureSize: g.ClosureSize, ConfigHash: g.ConfigHash, Config: g.Config,
				ConfigDir: g.ConfigDir, ConfigFiles: g.ConfigFiles}
			for a, p := range g.Roots {
				j.Roots[a] = p.String()
			}
			out = append(out, j)
		}
		b, err := eval.MarshalIndent(out)
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(b)
		return err
	}
	if len(gens) == 0 {
		fmt.Fprintf(e.stdout, "profile %s has no generations\n", name)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GEN\tDATE\tROOTS\tCLOSURE\tCONFIG\tFROM\tOBJECT")
	for _, g := range gens {
		mark := ""
		if g.Current {
			mark = " (current)"
		}
		fmt.Fprintf(tw, "%d%s\t%s\t%d\t%s\t%s\t%s\t%s\n", g.Number, mark, time.Unix(g.Created, 0).UTC().Format("2006-01-02 15:04:05"),
			len(g.Roots), store.FormatSize(g.ClosureSize), shortHash(g.ConfigHash), configFrom(g), g.Toplevel)
	}
	return tw.Flush()
}

// configFrom is where a generation's configuration was: its file, or its
// directory and files; "-" when the generation did not record it.
func configFrom(g *profile.Generation) string {
	switch len(g.ConfigFiles) {
	case 0:
		if g.ConfigDir == "" {
			return "-"
		}
		return g.ConfigDir + "/"
	case 1:
		return filepath.Join(g.ConfigDir, g.ConfigFiles[0])
	}
	return g.ConfigDir + "/{" + strings.Join(g.ConfigFiles, ",") + "}"
}

func shortHash(h string) string {
	if len(h) > 19 {
		return h[:19]
	}
	return h
}
