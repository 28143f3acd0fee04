package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

func init() {
	register(&command{
		name:    "attestations",
		args:    "[--closure] [--json] [--policy FILE]… PATH…",
		summary: "list who attested store paths (kind, signer, key, time, and whether the signature verifies under the trust policy) and their test results (test, result, key, time)",
		flags: func(fs *pflag.FlagSet) {
			fs.Bool("closure", false, "list the paths' closure too")
			fs.Bool("json", false, "print JSON")
			fs.StringArray("policy", nil, "a .cue file whose trust policy names people and keys (repeatable); the store owner's "+OwnerConfigFile+" always applies")
		},
		run: runAttestations,
	})
}

// jsonAttestation is one signature as `attestations --json` prints it.
type jsonAttestation struct {
	Path     string `json:"path"`
	Kind     string `json:"kind"`
	Key      string `json:"key"`
	Signer   string `json:"signer,omitempty"`
	Time     string `json:"time"`
	Status   string `json:"status"`
	Envelope string `json:"envelope"`
	// Test and Result are a test result's (kind test-result): the test's
	// store path and PASSED or FAILED.
	Test   string `json:"test,omitempty"`
	Result string `json:"result,omitempty"`
}

func runAttestations(e *env, fs *pflag.FlagSet, args []string) error {
	closure, _ := fs.GetBool("closure")
	asJSON, _ := fs.GetBool("json")
	files, _ := fs.GetStringArray("policy")
	st, paths, err := openPaths(e, args, closure)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	policies, err := trustPolicies(e, st, files)
	if err != nil {
		return err
	}
	var rows []jsonAttestation
	for _, p := range paths {
		r, err := attestationRows(ctx, st, p, policies)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
		tr, err := testResultRows(st, p, policies)
		if err != nil {
			return err
		}
		rows = append(rows, tr...)
	}
	if rows == nil {
		rows = []jsonAttestation{}
	}
	if asJSON {
		b, err := json.MarshalIndent(rows, "", "\t")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", b)
		return nil
	}
	if len(rows) == 0 {
		fmt.Fprintf(e.stderr, "no attestations of %d paths\n", len(paths))
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tKIND\tSIGNER\tKEY\tTIME\tSTATUS")
	for _, r := range rows {
		signer := r.Signer
		if signer == "" {
			signer = "-"
		}
		kind := r.Kind
		if r.Test != "" {
			kind += " " + storeName(r.Test) + " " + r.Result
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Path, kind, signer, r.Key, r.Time, r.Status)
	}
	return tw.Flush()
}

// attestationRows lists the signatures of p's attestations, each checked
// against the keys of policies (none: unverified).
func attestationRows(ctx context.Context, st *store.Store, p store.Path, policies []*trust.Policy) ([]jsonAttestation, error) {
	envs, err := trust.StoreDir(st.Dir).List(p.Base())
	if err != nil || len(envs) == 0 {
		return nil, err
	}
	sub, err := archive.StoreSubject(ctx, st, p)
	if err != nil {
		return nil, err
	}
	keys := trust.Keys{}
	people := map[trust.KeyID]string{}
	for _, pol := range policies {
		for _, pe := range pol.People {
			for _, k := range pe.Keys {
				keys.Add(k.Public)
				people[k.Public.ID()] = pe.Name
			}
		}
	}
	now := time.Now()
	var rows []jsonAttestation
	for _, env := range envs {
		c, ids, err := trust.ReadClaim(env)
		if err != nil {
			return nil, fmt.Errorf("attestation %s of %s: %w", trust.EnvelopeDigest(env), p, err)
		}
		status := map[trust.KeyID]string{}
		if len(policies) > 0 {
			v, err := trust.VerifyEnvelope(env, keys)
			if err != nil {
				return nil, fmt.Errorf("attestation %s of %s: %w", trust.EnvelopeDigest(env), p, err)
			}
			for _, pr := range v.Problems {
				status[pr.Key] = pr.Reason
			}
			for _, a := range v.Attestations {
				status[a.Key] = "valid"
				for _, pol := range policies {
					if _, known, problem := pol.KeyStatus(a.Key, now); known && problem != "" {
						status[a.Key] = "valid signature, but the key is " + problem + " in " + pol.Source
					}
				}
				if !a.Subject.Equal(sub) {
					status[a.Key] = "valid, but for other bytes than the store's"
				}
			}
		}
		for _, id := range ids {
			s, ok := status[id]
			if !ok {
				s = "unverified (no trust policy names keys)"
			}
			rows = append(rows, jsonAttestation{Path: p.String(), Kind: string(c.Kind), Key: string(id), Signer: people[id],
				Time: c.Time.UTC().Format(time.RFC3339), Status: s, Envelope: trust.EnvelopeDigest(env)})
		}
	}
	return rows, nil
}

// testResultRows lists the test results kept for p (hephc test): each
// signature, or one row for a result nobody signed.
func testResultRows(st *store.Store, p store.Path, policies []*trust.Policy) ([]jsonAttestation, error) {
	envs, err := testResults(st).List(p.Base()) // test.go
	if err != nil || len(envs) == 0 {
		return nil, err
	}
	keys := trust.Keys{}
	people := map[trust.KeyID]string{}
	for _, pol := range policies {
		for _, pe := range pol.People {
			for _, k := range pe.Keys {
				keys.Add(k.Public)
				people[k.Public.ID()] = pe.Name
			}
		}
	}
	var rows []jsonAttestation
	for _, env := range envs {
		r, ids, err := trust.ReadTestResult(env)
		if err != nil {
			return nil, fmt.Errorf("test result %s of %s: %w", trust.EnvelopeDigest(env), p, err)
		}
		row := jsonAttestation{Path: p.String(), Kind: "test-result", Test: r.Test.Path, Result: r.Result,
			Time: r.Time.UTC().Format(time.RFC3339), Envelope: trust.EnvelopeDigest(env)}
		if len(ids) == 0 {
			row.Key, row.Status = "-", "unsigned (the store's "+OwnerConfigFile+" names no signingKey)"
			rows = append(rows, row)
			continue
		}
		valid := map[trust.KeyID]bool{}
		if len(policies) > 0 {
			vs, err := trust.VerifyTestResult(env, keys)
			if err != nil {
				return nil, fmt.Errorf("test result %s of %s: %w", trust.EnvelopeDigest(env), p, err)
			}
			for _, id := range vs {
				valid[id] = true
			}
		}
		for _, id := range ids {
			row.Key, row.Signer, row.Status = string(id), people[id], "unverified (no trust policy names keys)"
			if len(policies) > 0 {
				row.Status = "not signed by a key the policies name"
				if valid[id] {
					row.Status = "valid"
				}
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// storeName is the name part of a store path, for people.
func storeName(path string) string {
	if p, err := store.ParsePath(path); err == nil {
		return p.Name
	}
	return path
}
