package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/server"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

func init() {
	register(&command{
		name:    "publish",
		args:    "--server URL [--attr ATTR] [--version V] PATH…|./result | [-A ATTR] FILE.cue…|DIR",
		summary: "publish store paths and their closure (or everything a configuration needs) to the package server's testing channel, with their attestations and test results",
		flags: func(fs *pflag.FlagSet) {
			clientFlags(fs)
			fs.StringP("attr", "A", "", "with a configuration: only what this attribute needs; the package's name on the server (default: the first path's name, or the configuration's file)")
			fs.String("version", "", "the package version (default: the first 12 characters of the first path's hash, or of the configuration's hash)")
			fs.String("registry", "", "push to this repository, oci://HOST/REPOSITORY, instead of the one the server names (its embedded one, at its own address, by default)")
			fs.Bool("only", false, "publish only the paths given, not their closure")
			fs.IntP("jobs", "j", 4, "uploads at once")
		},
		run: runPublish,
	})
}

func runPublish(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("want store paths, ./result, or a configuration to publish")
	}
	attr, _ := fs.GetString("attr")
	version, _ := fs.GetString("version")
	only, _ := fs.GetBool("only")
	jobs, _ := fs.GetInt("jobs")
	regFlag, _ := fs.GetString("registry")
	c, err := serverClient(e, fs, "", "")
	if err != nil {
		return err
	}
	if c.Token == "" {
		return fmt.Errorf("publishing needs a publisher's token: set %s or give --token-file", TokenEnv)
	}
	ctx := context.Background()
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()

	// What to publish: the closure of the paths given, or what the
	// configuration needs.
	var paths []store.Path
	if first, perr := pathArg(e, st, args[0]); perr == nil {
		if paths, err = closureArgs(ctx, e, st, args, !only); err != nil {
			return err
		}
		if attr == "" {
			attr = first.Name
		}
		if version == "" {
			version = first.Base()[:12]
		}
	} else {
		if paths, err = configPaths(ctx, e, st, attr, args, false); err != nil {
			return err
		}
		if attr == "" {
			attr = strings.TrimSuffix(strings.Join(args, " "), ".cue")
		}
		if version == "" {
			h, _ := configHash(e, args)
			version = strings.TrimPrefix(h, "blake3:")[:12]
		}
	}

	// Leave out what the server holds already, in another version.
	chs, err := c.Channels(ctx)
	if err != nil {
		return serverError(c, err)
	}
	held := map[string]bool{}
	for _, ch := range chs {
		for _, en := range ch.Entries {
			held[en.Path] = true
		}
	}
	var todo []store.Path
	for _, p := range paths {
		if !held[p.String()] {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		fmt.Fprintf(e.stderr, "the server holds all %d paths already: nothing to publish\n", len(paths))
		return nil
	}

	// Its tests: refused here when one failed; every latest result goes
	// with the publish, signed or not (the server counts the ones a key
	// of its trust policies signed, and shows the others).
	tests, unsigned, failed, err := publishTests(st, todo)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("publishing %s %s: refused, nothing published: its tests did not pass:\n  %s", attr, version, strings.Join(failed, "\n  "))
	}

	// The artifacts, in the registry the server reads.
	reg := regFlag
	if reg == "" {
		h, err := c.Health(ctx)
		if err != nil {
			return serverError(c, err)
		}
		reg = h.Registry
	}
	if reg == "" {
		return fmt.Errorf("%s names no registry: give --registry oci://HOST/REPOSITORY", c.Base)
	}
	ref, rc, err := serverRegistry(c, reg)
	if err != nil {
		return err
	}
	start := time.Now()
	atts := trust.StoreDir(st.Dir)
	res, err := rc.Push(ctx, st, todo, ref, registry.PushOptions{Jobs: jobs, Attestations: atts})
	if err != nil {
		return err
	}
	if len(res.Conflicts) > 0 {
		var cs []string
		for _, cf := range res.Conflicts {
			cs = append(cs, fmt.Sprintf("%s: %s holds manifest %s, this store's is %s", cf.Path, ref, cf.Theirs, cf.Ours))
		}
		return fmt.Errorf("publishing %s %s: refused, nothing published: other bytes of the same paths are in the registry:\n  %s", attr, version, strings.Join(cs, "\n  "))
	}
	req := server.PublishRequest{Attr: attr, Version: version, Tests: tests}
	for _, en := range append(slices.Clone(res.Pushed), res.Present...) {
		envs, err := atts.List(en.Path.Base())
		if err != nil {
			return err
		}
		req.Paths = append(req.Paths, server.PublishedPath{Path: en.Path.String(), Manifest: en.Manifest.Digest.String(), Envelopes: envs})
	}
	slices.SortFunc(req.Paths, func(a, b server.PublishedPath) int { return strings.Compare(a.Path, b.Path) })
	if err := c.Publish(ctx, req); err != nil {
		return serverError(c, err)
	}
	fmt.Fprintf(e.stderr, "published %s %s into testing: %d paths (%d pushed, %d in %s already; %d held by the server before, left out), %d test results (%d unsigned), in %s\n",
		attr, version, len(req.Paths), len(res.Pushed), len(res.Present), ref, len(paths)-len(todo), len(tests), unsigned, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(e.stdout, "%s %s\n", attr, version)
	return nil
}

// publishTests reads the test results kept beside the paths: each
// test's latest run (unsigned: how many of them carry no signature),
// and the tests whose latest run failed.
func publishTests(st *store.Store, paths []store.Path) (envs [][]byte, unsigned int, failed []string, err error) {
	type run struct {
		r   *trust.TestRun
		env []byte
		ids []trust.KeyID
	}
	in := map[string]bool{}
	for _, p := range paths {
		in[p.String()] = true
	}
	latest := map[string]run{}
	for _, p := range paths {
		list, err := testResults(st).List(p.Base())
		if err != nil {
			return nil, 0, nil, err
		}
		for _, b := range list {
			r, ids, err := trust.ReadTestResult(b)
			if err != nil {
				continue
			}
			if l, ok := latest[r.Derivation]; !ok || r.Time.After(l.r.Time) {
				latest[r.Derivation] = run{r, b, ids}
			}
		}
	}
	seen := map[string]bool{}
	for _, d := range slices.Sorted(maps.Keys(latest)) {
		l := latest[d]
		if l.r.Result != trust.TestPassed {
			failed = append(failed, fmt.Sprintf("%s failed (%s): %s", l.r.Test.Path, l.r.Time.UTC().Format(time.RFC3339), strings.Join(l.r.Failed, ", ")))
			continue
		}
		tests := false
		for _, s := range l.r.Tested {
			tests = tests || in[s.Path]
		}
		sum := sha256.Sum256(l.env)
		if k := hex.EncodeToString(sum[:]); tests && !seen[k] {
			seen[k] = true
			envs = append(envs, l.env)
			if len(l.ids) == 0 {
				unsigned++
			}
		}
	}
	return envs, unsigned, failed, nil
}
