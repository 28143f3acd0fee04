package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"cuelang.org/go/cue"
	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// SubstitutersEnv lists binary caches, separated by spaces or commas.
const SubstitutersEnv = "HEPHC_SUBSTITUTERS"

// substituteFlags adds realize's flags about binary caches.
func substituteFlags(fs *pflag.FlagSet) {
	fs.StringArray("substituter", nil, "a binary cache, oci://HOST/REPOSITORY, asked for each path before it is built (repeatable); "+SubstitutersEnv+", the configuration's substituters and the store owner's are asked too")
	fs.Bool("no-substitute", false, "ask no binary cache: build everything")
	fs.Bool("substitute-only", false, "build nothing: a path no cache has, or whose copy the trust policy does not admit, is an error")
}

// substitute makes the paths the realization of roots lacks valid from
// the binary caches, where a cache has them and every trust policy (the
// store owner's, the configuration's, --policy's) admits its copy, before
// anything is built. It says once why each path a cache has was not
// admitted. With --substitute-only a path left missing is an error; else
// it is built. The results of tests (the policy's, which realize runs
// beside its builds) are asked for too, each alone (a result needs
// nothing of what its test was built from): a test whose result comes
// from a cache is not run here; one no cache has, or whose copy is not
// admitted, is run, even with --substitute-only.
func substitute(ctx context.Context, e *env, fs *pflag.FlagSet, st *store.Store, eg *eval.Graph, g *store.Graph, roots []store.DrvHash, tests []*policy.Test, args []string) error {
	off, _ := fs.GetBool("no-substitute")
	only, _ := fs.GetBool("substitute-only")
	flags, _ := fs.GetStringArray("substituter")
	policyFiles, _ := fs.GetStringArray("policy")
	if dry, _ := fs.GetBool("dry-run"); dry {
		return nil
	}
	// realize --server: only what the channel holds (channels.go).
	from, err := channelSource(ctx, e, fs, st, args)
	if err != nil {
		return err
	}
	if from != nil {
		off, only = false, true
	}
	if off && only {
		return usagef("--no-substitute and --substitute-only: choose one")
	}
	if off {
		return nil
	}
	order, err := g.Closure(roots...)
	if err != nil {
		return err
	}
	if len(tests) > 0 {
		tg := &store.Graph{Derivations: maps.Clone(g.Derivations), Origins: maps.Clone(g.Origins)}
		for _, t := range tests {
			addTest(tg, t) // test.go
			order = append(order, t.Hash)
		}
		g = tg
	}
	paths := make([]store.Path, len(order))
	for i, h := range order {
		paths[i] = g.PathOf(h)
	}
	valid, err := st.ValidPaths(ctx, paths)
	if err != nil {
		return err
	}
	var missing []store.DrvHash
	for _, h := range order {
		if !valid[g.PathOf(h)] {
			missing = append(missing, h)
		}
	}
	isResult := make(map[store.Path]bool, len(tests))
	for _, t := range tests {
		isResult[t.Path()] = true
	}
	if len(missing) == 0 {
		return nil
	}
	conf, err := loadSubstitution(e, args, policyFiles)
	if err != nil {
		return err
	}
	ownerCaches, err := ownerSubstituters(e, st)
	if err != nil {
		return err
	}
	caches, err := substituters(flags, e.getenv(SubstitutersEnv), conf.substituters, ownerCaches)
	if err != nil {
		return err
	}
	if from != nil {
		caches = from.caches
		from.channelsOf(e.cwd, eg, g, missing)
	}
	if len(caches) == 0 {
		if only {
			return fmt.Errorf("--substitute-only: no binary cache to substitute from (give --substituter oci://HOST/REPOSITORY, set %s, or list substituters in the configuration)", SubstitutersEnv)
		}
		return nil
	}
	// The store owner's policy, from a file only the owner may write.
	owner, err := ownerConfig(e, st)
	if err != nil {
		return err
	}
	// What the graph says of each path, so that the caches' manifests
	// are checked against it; recorded, as realize records what it
	// builds, so that the store knows each path's derivation.
	if err := st.SaveDerivations(ctx, g, missing); err != nil {
		return err
	}
	var wants []registry.Want
	for _, h := range missing {
		w, err := want(g, h)
		if err != nil {
			return err
		}
		wants = append(wants, w)
	}
	start := time.Now()
	sp := &substProgress{e: e, live: newProgress(e).live}
	c := &registry.Client{}
	if from != nil {
		c = from.client
	}
	res, err := c.Substitute(ctx, st, wants, registry.SubstituteOptions{
		Caches:        caches,
		OwnerPolicies: owner.Trust,
		Policies:      conf.trust,
		Now:           time.Now(),
		Attestations:  trust.StoreDir(st.Dir),
		Events:        sp.event,
		Admit:         from.admitFunc(),
	})
	sp.finish()
	if err != nil {
		return err
	}
	if len(res.Substituted) > 0 || len(res.Refused) > 0 || len(res.Unreachable) > 0 {
		fmt.Fprintf(e.stderr, "substituted %d of %d paths (%s) from %s in %s; %d not admitted, %d in no cache\n",
			len(res.Substituted), len(missing), store.FormatSize(res.Bytes), joinRefs(caches), time.Since(start).Round(time.Millisecond), len(res.Refused), len(res.Missing))
	}
	if only {
		refused, inNone := 0, 0
		for _, r := range res.Refused {
			if !isResult[r.Path] {
				refused++
			}
		}
		for _, p := range res.Missing {
			if !isResult[p] {
				inNone++
				fmt.Fprintf(e.stderr, "not substituted: %s: in no cache\n", p)
			}
		}
		if refused+inNone > 0 {
			return fmt.Errorf("--substitute-only: %d paths not substituted (%d not admitted, %d in no cache); nothing built", refused+inNone, refused, inNone)
		}
	}
	return nil
}

// want is what the graph says of h's output: its pin, where it is
// written, and what its content may refer to (the outputs of its
// inputs' closure).
func want(g *store.Graph, h store.DrvHash) (registry.Want, error) {
	d := g.Derivations[h]
	w := registry.Want{Path: g.PathOf(h), CA: d.OutputHash, Attr: g.Origins[h].Attr}
	if strings.HasPrefix(d.OutputHash, "h1:") {
		mod, _ := d.Attrs["module"].(string)
		ver, _ := d.Attrs["version"].(string)
		w.GoModule = mod + "@" + ver
	}
	var inputs []store.DrvHash
	for _, name := range d.InputNames() {
		inputs = append(inputs, d.Inputs[name])
	}
	closure, err := g.Closure(inputs...)
	if err != nil {
		return w, err
	}
	for _, ih := range closure {
		w.References = append(w.References, g.PathOf(ih))
	}
	return w, nil
}

// substitution is what the configuration says of substitution: its
// substituters, and the trust policies of its policies and --policy's.
type substitution struct {
	substituters []string
	trust        []*trust.Policy
}

// loadSubstitution reads the configuration's substituters field and the
// trust policies of its policies (its policy field, policy.cue beside it,
// --policy files).
func loadSubstitution(e *env, args, policyFiles []string) (*substitution, error) {
	l := lang.NewLoader(e.cwd)
	cfg, err := l.Load(args...)
	if err != nil {
		return nil, err
	}
	out := &substitution{}
	if out.substituters, err = stringList(l, cfg.Value, "substituters"); err != nil {
		return nil, err
	}
	var files []string
	for _, f := range policyFiles {
		files = append(files, absPath(e.cwd, f))
	}
	set, err := policy.Load(l, cfg, policy.Files(cfg, files))
	if err != nil {
		return nil, err
	}
	if out.trust, err = set.Trust(); err != nil {
		return nil, err
	}
	return out, nil
}

// ownerSubstituters reads the substituters of the store owner's
// configuration, STORE/config.cue (checked by ownerConfig).
func ownerSubstituters(e *env, st *store.Store) ([]string, error) {
	file := filepath.Join(st.Dir, OwnerConfigFile)
	if _, err := os.Lstat(file); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	l := lang.NewLoader(e.cwd)
	cfg, err := l.Load(file)
	if err != nil {
		return nil, err
	}
	return stringList(l, cfg.Value, "substituters")
}

// stringList reads the list of strings at field of v, if there is one.
func stringList(l *lang.Loader, v cue.Value, field string) ([]string, error) {
	f := v.LookupPath(cue.ParsePath(field))
	if !f.Exists() {
		return nil, nil
	}
	var out []string
	if err := f.Decode(&out); err != nil {
		return nil, l.Diagnose(err)
	}
	return out, nil
}

// substituters parses the caches of each source in order (flags, the
// environment, the configuration, the store owner), without repeats.
func substituters(flags []string, env string, config, owner []string) ([]registry.Ref, error) {
	var all []string
	all = append(all, flags...)
	all = append(all, strings.FieldsFunc(env, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' })...)
	all = append(all, config...)
	all = append(all, owner...)
	var out []registry.Ref
	seen := map[string]bool{}
	for _, s := range all {
		ref, err := registry.ParseRef(s)
		if err != nil {
			return nil, err
		}
		if !seen[ref.String()] {
			seen[ref.String()] = true
			out = append(out, ref)
		}
	}
	return out, nil
}

func joinRefs(refs []registry.Ref) string {
	s := make([]string, len(refs))
	for i, r := range refs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

// substProgress shows a substitution: on a terminal one live line (paths
// and bytes), otherwise a line per path substituted; a path not admitted
// is said once, with why, either way.
type substProgress struct {
	e         *env
	live      bool
	mu        sync.Mutex
	admitted  int
	done      int
	bytes     int64
	total     int64
	lastDrawn time.Time
}

func (p *substProgress) event(ev registry.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev.Kind {
	case registry.EventAdmitted:
		p.admitted++
		p.total += ev.Bytes
	case registry.EventFetched:
		p.bytes += ev.Bytes
	case registry.EventSubstituted:
		p.done++
		if !p.live {
			fmt.Fprintf(p.e.stderr, "substituted %s\n", ev.Path)
		}
	case registry.EventRefused:
		p.clear()
		fmt.Fprintf(p.e.stderr, "not substituted: %s: %s\n", ev.Path, ev.Reason)
	case registry.EventUnreachable:
		p.clear()
		fmt.Fprintf(p.e.stderr, "hephc: warning: binary cache %s\n", ev.Reason)
	}
	if p.live && time.Since(p.lastDrawn) > 50*time.Millisecond {
		p.lastDrawn = time.Now()
		fmt.Fprintf(p.e.stderr, "\r\033[K[substituting %d/%d paths, %s of %s]", p.done, p.admitted, store.FormatSize(p.bytes), store.FormatSize(p.total))
	}
}

func (p *substProgress) clear() {
	if p.live {
		fmt.Fprint(p.e.stderr, "\r\033[K")
	}
}

func (p *substProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}
