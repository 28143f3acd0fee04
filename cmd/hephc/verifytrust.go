package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// verifyTrustFlags adds verify's flags about trust: --trust FILE.cue and
// --manifest DIR, which check signatures rather than content.
func verifyTrustFlags(fs *pflag.FlagSet) {
	fs.String("trust", "", "check every path of the closure of the configuration in `FILE` against its trust policies (the store owner's, the configuration's, --policy's): who attested it, who is missing, the rule")
	fs.StringP("attr", "A", "", "with --trust: only this attribute's closure")
	fs.Bool("json", false, "with --trust: print JSON")
	fs.String("manifest", "", "check the signed manifest in `DIR` (hephc sign --manifest): its detached signatures by distinct people, and the store's paths against it")
	fs.Int("threshold", 1, "with --manifest: `N`, how many distinct people must have signed")
	fs.StringArray("policy", nil, "with --trust or --manifest: a .cue `FILE` whose trust policy must hold too (repeatable)")
}

// verifyTrust runs verify --trust or --manifest; done is false when
// neither was given.
func verifyTrust(e *env, fs *pflag.FlagSet, args []string) (done bool, err error) {
	file, _ := fs.GetString("trust")
	dir, _ := fs.GetString("manifest")
	files, _ := fs.GetStringArray("policy")
	switch {
	case file == "" && dir == "":
		return false, nil
	case file != "" && dir != "":
		return true, usagef("--trust and --manifest: one at a time")
	case len(args) > 0:
		return true, usagef("--trust and --manifest take no store paths")
	}
	if dir != "" {
		threshold, _ := fs.GetInt("threshold")
		if threshold < 1 {
			return true, usagef("--threshold wants at least 1, got %d", threshold)
		}
		st, err := openStore(e)
		if err != nil {
			return true, err
		}
		defer st.Close()
		policies, err := trustPolicies(e, st, files)
		if err != nil {
			return true, err
		}
		return true, verifyManifest(e, st, absPath(e.cwd, dir), policies, threshold) // manifest.go
	}
	attr, _ := fs.GetString("attr")
	asJSON, _ := fs.GetBool("json")
	return true, runVerifyTrust(e, file, attr, files, asJSON)
}

// trustRow is one path as verify --trust reports it.
type trustRow struct {
	Path       string   `json:"path"`
	Attr       string   `json:"attr"`
	OK         bool     `json:"ok"`
	OnPin      bool     `json:"onPin,omitempty"`
	Built      []string `json:"built"`
	Reproduced []string `json:"reproduced"`
	Problems   []string `json:"problems,omitempty"`
}

// runVerifyTrust checks every path of the configuration's closure (the
// derivations of attr, or of every root) against the trust policies: the
// store owner's, judged as on import (every rule with groups applies, so
// no configuration can move a path out of a group the owner guards), and
// the configuration's own, policy.cue's and files', whose group rules
// apply by the attribute each derivation is written at. A path is judged
// on the attestations the store keeps beside it; a fixed-output path on
// its pin. One line per path; exit 1 if any fails.
func runVerifyTrust(e *env, file, attr string, files []string, asJSON bool) error {
	g, set, err := evaluate(e, evaluation{attr: attr, args: []string{file}, policy: true, policyFiles: files, useCache: false})
	if err != nil {
		return err
	}
	conf, err := set.Trust()
	if err != nil {
		return err
	}
	for _, p := range conf {
		p.RelTo(e.cwd)
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	owner, err := ownerConfig(e, st)
	if err != nil {
		return err
	}
	if len(owner.Trust)+len(conf) == 0 {
		return fmt.Errorf("verifying the trust of %s: no trust policy: give the configuration's policy a trust field, write one in the store's %s, or give --policy FILE", file, OwnerConfigFile)
	}
	sg := pipeline.StoreGraph(g)
	order, err := sg.Closure(pipeline.RootHashes(g)...)
	if err != nil {
		return err
	}
	ctx := context.Background()
	start := time.Now()
	rows := make([]trustRow, 0, len(order))
	for _, h := range order {
		row, err := judgePath(ctx, st, sg.PathOf(h), sg.Origins[h].Attr, owner.Trust, conf)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b trustRow) int { return strings.Compare(a.Path, b.Path) })
	failed := 0
	for _, r := range rows {
		if !r.OK {
			failed++
		}
	}
	if asJSON {
		b, err := json.MarshalIndent(rows, "", "\t")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		printTrustRows(e, rows)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(e.stderr, "%d paths, %d fail the trust policy (%d policies), in %s (%.0f paths/s)\n", len(rows), failed, len(owner.Trust)+len(conf), elapsed.Round(time.Millisecond), float64(len(rows))/elapsed.Seconds())
	if failed > 0 {
		return fmt.Errorf("%d of %d paths do not meet the trust policy", failed, len(rows))
	}
	return nil
}

// judgePath judges the store's path p, written at attr, under the owner's
// policies (as on import) and the configuration's (at attr).
func judgePath(ctx context.Context, st *store.Store, p store.Path, attr string, owner, conf []*trust.Policy) (trustRow, error) {
	row := trustRow{Path: p.String(), Attr: attr, Built: []string{}, Reproduced: []string{}}
	info, ok, err := st.QueryPathInfo(ctx, p)
	if err != nil {
		return row, err
	}
	if !ok {
		row.Problems = []string{"not in the store (hephc realize it, or import it)"}
		return row, nil
	}
	sub, err := archive.StoreSubject(ctx, st, p)
	if err != nil {
		return row, err
	}
	envs, err := trust.StoreDir(st.Dir).List(p.Base())
	if err != nil {
		return row, err
	}
	cand := trust.Candidate{Subject: sub, Pinned: info.CA != ""}
	j := trust.Judge(owner, cand, envs, time.Now())
	cand.Attr = attr
	k := trust.Judge(conf, cand, envs, time.Now())
	built, reproduced := map[string]bool{}, map[string]bool{}
	for _, d := range append(j.Decisions, k.Decisions...) {
		row.OnPin = row.OnPin || d.OnPin
		for _, n := range d.Built {
			built[n] = true
		}
		for _, n := range d.Reproduced {
			reproduced[n] = true
		}
	}
	row.Built, row.Reproduced = sortedNames(built), sortedNames(reproduced)
	for _, v := range append(j.Violations(), k.Violations()...) {
		row.Problems = append(row.Problems, strings.TrimPrefix(v.Error(), v.Path+": "))
	}
	row.OK = len(row.Problems) == 0
	return row, nil
}

func printTrustRows(e *env, rows []trustRow) {
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tPATH\tATTR\tATTESTED BY")
	for _, r := range rows {
		status, who := "ok", "built by "+listOr(r.Built, "nobody")
		if len(r.Reproduced) > 0 {
			who += ", reproduced by " + listOr(r.Reproduced, "nobody")
		}
		if r.OnPin {
			who = "its pin"
		}
		if !r.OK {
			status = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", status, r.Path, r.Attr, who)
	}
	tw.Flush()
	for _, r := range rows {
		for _, p := range r.Problems {
			fmt.Fprintf(e.stdout, "%s: %s\n", r.Path, p)
		}
	}
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
