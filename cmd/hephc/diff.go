package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/gendiff"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "diff",
		args:    "[--profile NAME] [-A ATTR] [--json] [OLD NEW]",
		summary: "what changed between two generations (or store paths, or a generation and a .cue file) and why",
		flags: func(fs *pflag.FlagSet) {
			fs.String("profile", "system", "the profile whose generations are meant")
			fs.StringP("attr", "A", "", "a configuration's side is only this attribute's graph (as realize -A made a generation)")
			fs.Bool("json", false, "print JSON")
		},
		run: runDiff,
	})
}

// diffSide is one side of a diff as the command found it.
type diffSide struct {
	*gendiff.Side
	label string
	// cfg is the configuration (for positions), when the side is one.
	cfg cue.Value
}

func runDiff(e *env, fs *pflag.FlagSet, args []string) error {
	profileName, _ := fs.GetString("profile")
	asJSON, _ := fs.GetBool("json")
	attr, _ := fs.GetString("attr")
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	var specs []string
	switch len(args) {
	case 0:
		gens, err := profile.List(ctx, st, profileName)
		if err != nil {
			return err
		}
		if len(gens) < 2 {
			return fmt.Errorf("profile %s has %d generation(s); a diff needs two (or name two things: hephc diff OLD NEW)", profileName, len(gens))
		}
		specs = []string{strconv.Itoa(gens[len(gens)-2].Number), strconv.Itoa(gens[len(gens)-1].Number)}
	case 2:
		specs = args
	default:
		return usagef("want no arguments (the last two generations) or two: generation numbers, store paths or .cue files")
	}
	sides := make([]*diffSide, 2)
	for i, spec := range specs {
		if sides[i], err = resolveSide(ctx, e, st, profileName, attr, spec); err != nil {
			return err
		}
	}
	d, err := gendiff.Compare(sides[0].Side, sides[1].Side)
	if err != nil {
		return err
	}
	placeReasons(e, d, sides[1])
	if asJSON {
		b, err := eval.MarshalIndent(struct {
			Old  string        `json:"old"`
			New  string        `json:"new"`
			Diff *gendiff.Diff `json:"diff"`
		}{sides[0].label, sides[1].label, d})
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(b)
		return err
	}
	printDiff(e, sides[0].label, sides[1].label, d)
	return nil
}

// resolveSide turns a generation number, a store path (or ./result) or a
// configuration (.cue file or directory; its attribute attr, when set)
// into a side.
func resolveSide(ctx context.Context, e *env, st *store.Store, profileName, attr, spec string) (*diffSide, error) {
	if n, err := strconv.Atoi(spec); err == nil {
		g, err := profile.Get(ctx, st, profileName, n)
		if err != nil {
			return nil, err
		}
		side, err := gendiff.FromGeneration(ctx, st, g.Toplevel, g.Roots)
		if err != nil {
			return nil, err
		}
		ds := &diffSide{Side: side, label: fmt.Sprintf("generation %d", n)}
		// The working tree's configuration gives positions when it is
		// what this generation was built from.
		if g.Config != "" {
			files := strings.Fields(g.Config)
			if h, _ := configHash(e, files); h == g.ConfigHash {
				if cfg, err := lang.NewLoader(e.cwd).Load(files...); err == nil {
					ds.cfg = cfg.Value
				}
			}
		}
		return ds, nil
	}
	if strings.HasSuffix(spec, ".cue") || isConfigDir(absPath(e.cwd, spec)) {
		g, _, err := evaluate(e, evaluation{args: []string{spec}, attr: attr, useCache: true})
		if err != nil {
			return nil, err
		}
		side := &gendiff.Side{Graph: pipeline.StoreGraph(g), Roots: g.Roots}
		for _, n := range g.Nodes {
			if err := side.Observe(ctx, st, n.Path()); err != nil {
				return nil, err
			}
		}
		ds := &diffSide{Side: side, label: spec}
		if cfg, err := lang.NewLoader(e.cwd).Load(spec); err == nil {
			ds.cfg = cfg.Value
		}
		return ds, nil
	}
	p, err := pathArg(e, st, spec)
	if err != nil {
		return nil, usagef("%q is not a generation number, a store path or a .cue file", spec)
	}
	side, err := gendiff.FromStore(ctx, st, map[string]store.Path{p.Name: p})
	if err != nil {
		return nil, err
	}
	return &diffSide{Side: side, label: p.String()}, nil
}

// isConfigDir reports whether p is a directory of a configuration (not a
// symlink into the store such as ./result).
func isConfigDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// placeReasons finds where each reason's field is written in the new
// side's configuration. A pinned source's outputHash is written as its sum
// (#GoModule) or hash; an element of a list of inputs where it is written
// inputs.deps[2], else the list.
func placeReasons(e *env, d *gendiff.Diff, side *diffSide) {
	if !side.cfg.Exists() {
		return
	}
	for _, c := range d.Changed {
		for _, r := range c.Why {
			for _, field := range fieldCandidates(r.Field) {
				if pos, ok := eval.FieldPos(side.cfg, r.Attr+"."+field); ok {
					r.Pos = pos.Rel(e.cwd)
					break
				}
			}
		}
	}
}

func fieldCandidates(field string) []string {
	if field == "outputHash" {
		return []string{"sum", "hash", "outputHash"}
	}
	if rest, ok := strings.CutPrefix(field, "attrs."); ok {
		return []string{rest, field}
	}
	if list, _, ok := strings.Cut(field, "["); ok && strings.HasPrefix(field, "inputs.") {
		return []string{field, list, "inputs"}
	}
	if strings.HasPrefix(field, "inputs.") {
		return []string{field, "inputs"}
	}
	return []string{field}
}

func printDiff(e *env, oldLabel, newLabel string, d *gendiff.Diff) {
	c := colors(e)
	w := e.stdout
	fmt.Fprintf(w, "%s → %s\n", oldLabel, newLabel)
	// The closure is what generations and path-info --closure count: the
	// outputs and what they refer to. With build inputs, every output the
	// roots were built from that is in the store.
	fmt.Fprintf(w, "closure: %s\n", sizeChange(d.ClosureBefore, d.ClosureAfter))
	fmt.Fprintf(w, "with build inputs: %s\n", sizeChange(d.BuildBefore, d.BuildAfter))
	if len(d.Added)+len(d.Removed)+len(d.Changed)+len(d.Services) == 0 {
		fmt.Fprintln(w, "no changes")
		return
	}
	if len(d.Changed) > 0 {
		fmt.Fprintf(w, "\n%schanged:%s\n", c.yellow, c.reset)
		for _, p := range d.Changed {
			ver := fmt.Sprintf("%s → %s", orNone(p.OldVersion), orNone(p.NewVersion))
			switch {
			case p.Rebuilt() && p.NewVersion == "":
				ver = "new hash"
			case p.Rebuilt():
				ver = p.NewVersion + ", same version, new hash"
			}
			size := ""
			if p.OldSize != gendiff.Unknown || p.NewSize != gendiff.Unknown {
				size = "  " + sizeChange(p.OldSize, p.NewSize)
			}
			fmt.Fprintf(w, "  %s%s%s  %s%s\n", c.yellow, p.Key, c.reset, ver, size)
			for i, r := range p.Why {
				if i == maxBecause && len(p.Why) > maxBecause+1 {
					fmt.Fprintf(w, "    … and %d more causes (--json lists them)\n", len(p.Why)-i)
					break
				}
				via := ""
				if len(r.Via) > 0 {
					via = " via " + strings.Join(r.Via, " → ")
				}
				at := ""
				if r.Pos != "" {
					at = "  (" + r.Pos + ")"
				}
				fmt.Fprintf(w, "    because %s.%s: %s → %s%s%s\n", r.Attr, r.Field, orNone(r.Old), orNone(r.New), via, at)
			}
		}
	}
	if len(d.Added) > 0 {
		fmt.Fprintf(w, "\n%sadded:%s\n", c.green, c.reset)
		for _, p := range d.Added {
			fmt.Fprintf(w, "  %s+ %s%s  %s%s\n", c.green, p.Key, c.reset, orNone(p.NewVersion), knownSize(p.NewSize))
		}
	}
	if len(d.Removed) > 0 {
		fmt.Fprintf(w, "\n%sremoved:%s\n", c.red, c.reset)
		for _, p := range d.Removed {
			fmt.Fprintf(w, "  %s- %s%s  %s%s\n", c.red, p.Key, c.reset, orNone(p.OldVersion), knownSize(p.OldSize))
		}
	}
	if len(d.Services) > 0 {
		fmt.Fprintf(w, "\nservices:\n")
		for _, s := range d.Services {
			switch {
			case s.Field != "":
				fmt.Fprintf(w, "  %s~ %s:%s services.%s.%s: %s → %s\n", c.yellow, s.Image, c.reset, s.Service, s.Field, orNone(s.Old), orNone(s.New))
			case s.Old == "":
				fmt.Fprintf(w, "  %s+ %s: %s%s %s\n", c.green, s.Image, s.Service, c.reset, s.New)
			default:
				fmt.Fprintf(w, "  %s- %s: %s%s\n", c.red, s.Image, s.Service, c.reset)
			}
		}
	}
}

// maxBecause is how many causes of one package's change are printed; the
// rest are counted.
const maxBecause = 4

// sizeChange is "OLD → NEW (±DELTA)", either side possibly unknown (not
// realized).
func sizeChange(before, after int64) string {
	size := func(n int64) string {
		if n == gendiff.Unknown {
			return "(not realized)"
		}
		return store.FormatSize(n)
	}
	s := size(before) + " → " + size(after)
	if before != gendiff.Unknown && after != gendiff.Unknown {
		s += " (" + signedBytes(after-before) + ")"
	}
	return s
}

// knownSize is "  SIZE", or nothing when the size is unknown.
func knownSize(n int64) string {
	if n == gendiff.Unknown {
		return ""
	}
	return "  " + store.FormatSize(n)
}

type palette struct{ red, green, yellow, reset string }

// colors are ANSI colours on a terminal (unless NO_COLOR), else none.
func colors(e *env) palette {
	if f, ok := e.stdout.(*os.File); ok && e.getenv("NO_COLOR") == "" && e.getenv("TERM") != "dumb" {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return palette{"\033[31m", "\033[32m", "\033[33m", "\033[0m"}
		}
	}
	return palette{}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func signedBytes(n int64) string {
	if n < 0 {
		return "-" + store.FormatSize(-n)
	}
	return "+" + store.FormatSize(n)
}
