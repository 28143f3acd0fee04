package policy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"cuelang.org/go/cue"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/trust"
)

// Trust compiles the trust field of each policy of s into a plain trust
// policy (the store takes no CUE); policies without one give none.
func (s *Set) Trust() ([]*trust.Policy, error) {
	if s == nil {
		return nil, nil
	}
	var out []*trust.Policy
	for _, p := range s.Policies {
		tp, ok, err := p.Trust()
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, tp)
		}
	}
	return out, nil
}

// Trust compiles p's trust field, heph.#TrustPolicy; ok is false when p
// has none. Errors carry the position of what is wrong.
func (p *Policy) Trust() (tp *trust.Policy, ok bool, err error) {
	v := p.Value.LookupPath(cue.ParsePath("trust"))
	if !v.Exists() {
		return nil, false, nil
	}
	if err := v.Validate(cue.Concrete(true)); err != nil {
		return nil, false, err
	}
	c := &trustCompiler{}
	tp = &trust.Policy{Source: p.Source}
	c.people(v.LookupPath(cue.ParsePath("people")), tp)
	c.revoked(v.LookupPath(cue.ParsePath("revoked")), tp)
	c.rules(v.LookupPath(cue.ParsePath("rules")), tp)
	if len(c.ds) > 0 {
		return nil, false, c.ds.Sort()
	}
	if err := tp.Check(); err != nil {
		d := lang.Diagnostic{Pos: eval.ValuePos(v), Path: eval.PolicyField + ".trust", Msg: err.Error()}
		var pe *trust.PolicyError
		if errors.As(err, &pe) && pe.Pos.IsValid() {
			d.Pos, d.Msg = pe.Pos, pe.Msg
		}
		return nil, false, lang.Diagnostics{d}
	}
	return tp, true, nil
}

type trustCompiler struct{ ds lang.Diagnostics }

func (c *trustCompiler) fail(v cue.Value, path, format string, args ...any) {
	c.ds = append(c.ds, lang.Diagnostic{Pos: eval.ValuePos(v), Path: eval.PolicyField + ".trust." + path, Msg: fmt.Sprintf(format, args...)})
}

func (c *trustCompiler) people(v cue.Value, tp *trust.Policy) {
	it, err := v.Fields()
	if err != nil {
		return
	}
	for it.Next() {
		name := it.Selector().Unquoted()
		pe := trust.Person{Name: name, Pos: eval.ValuePos(it.Value())}
		keys, _ := it.Value().LookupPath(cue.ParsePath("keys")).List()
		for i := 0; keys.Next(); i++ {
			kv := keys.Value()
			path := fmt.Sprintf("people.%s.keys[%d]", it.Selector(), i)
			k := trust.Key{Pos: eval.ValuePos(kv)}
			s, _ := kv.LookupPath(cue.ParsePath("key")).String()
			if k.Public, err = trust.ParsePublicKey(s); err != nil {
				c.fail(kv, path+".key", "%v", err)
				continue
			}
			if ev := kv.LookupPath(cue.ParsePath("expires")); ev.Exists() {
				es, _ := ev.String()
				if k.Expires, err = time.Parse(time.RFC3339, es); err != nil {
					c.fail(ev, path+".expires", "%q is not an RFC 3339 time: %v", es, err)
				}
			}
			pe.Keys = append(pe.Keys, k)
		}
		tp.People = append(tp.People, pe)
	}
}

func (c *trustCompiler) revoked(v cue.Value, tp *trust.Policy) {
	list, err := v.List()
	if err != nil {
		return
	}
	for i := 0; list.Next(); i++ {
		rv := list.Value()
		s, _ := rv.LookupPath(cue.ParsePath("key")).String()
		r := trust.Revocation{Pos: eval.ValuePos(rv)}
		r.Reason, _ = rv.LookupPath(cue.ParsePath("reason")).String()
		if strings.HasPrefix(s, "SHA256:") {
			r.Key = trust.KeyID(s)
		} else if k, err := trust.ParsePublicKey(s); err != nil {
			c.fail(rv, fmt.Sprintf("revoked[%d].key", i), "%v", err)
			continue
		} else {
			r.Key = k.ID()
		}
		tp.Revoked = append(tp.Revoked, r)
	}
}

func (c *trustCompiler) rules(v cue.Value, tp *trust.Policy) {
	list, err := v.List()
	if err != nil {
		return
	}
	for list.Next() {
		rv := list.Value()
		var r struct {
			Groups        []string `json:"groups"`
			Names         []string `json:"names"`
			Signatures    int      `json:"signatures"`
			Reproductions int      `json:"reproductions"`
			From          []string `json:"from"`
		}
		if err := rv.Decode(&r); err != nil {
			c.ds = append(c.ds, lang.Diagnostic{Pos: eval.ValuePos(rv), Path: eval.PolicyField + ".trust.rules", Msg: err.Error()})
			continue
		}
		tp.Rules = append(tp.Rules, trust.Rule{Groups: r.Groups, Names: r.Names, Signatures: r.Signatures, Reproductions: r.Reproductions, From: r.From, Pos: eval.ValuePos(rv)})
	}
}

// trustRelTo makes the positions of the diagnostics of compiling a trust
// policy relative to cwd, as every other policy error's are.
func trustRelTo(err error, cwd string) error {
	var ds lang.Diagnostics
	if !errors.As(err, &ds) {
		return err
	}
	out := make(lang.Diagnostics, len(ds))
	for i, d := range ds {
		d.Pos = d.Pos.RelTo(cwd)
		out[i] = d
	}
	return out
}

// LoadTrust reads the trust policies of the .cue files given: each file's
// policy field (a heph.#Policy) that has trust. A file whose policy has
// none is an error: it was given to say whom to trust.
func LoadTrust(cwd string, files ...string) ([]*trust.Policy, error) {
	var out []*trust.Policy
	for _, f := range files {
		l := lang.NewLoader(cwd)
		cfg, err := l.Load(f)
		if err != nil {
			return nil, err
		}
		set, err := Load(l, cfg, nil)
		if err != nil {
			return nil, err
		}
		tps, err := set.Trust()
		if err != nil {
			return nil, err
		}
		if len(tps) == 0 {
			return nil, fmt.Errorf("%s: its policy has no trust field (heph.#TrustPolicy)", f)
		}
		for _, tp := range tps {
			tp.RelTo(cwd)
		}
		out = append(out, tps...)
	}
	return out, nil
}

// StoreConfig is a store owner's configuration (heph.#StoreConfig), as
// the CLI uses it.
type StoreConfig struct {
	// Trust are the trust policies every admission must meet.
	Trust []*trust.Policy
	// SigningKey is the secret key file to sign with ("" for none),
	// absolute.
	SigningKey string
}

// LoadStoreConfig reads the store owner's configuration file.
func LoadStoreConfig(cwd, file string) (*StoreConfig, error) {
	l := lang.NewLoader(cwd)
	cfg, err := l.Load(file)
	if err != nil {
		return nil, err
	}
	def, err := l.Definition(cfg.Dir, "#StoreConfig")
	if err != nil {
		return nil, err
	}
	if err := cfg.Value.Unify(def).Validate(); err != nil {
		return nil, l.Diagnose(err)
	}
	sc := &StoreConfig{}
	if v := cfg.Value.LookupPath(cue.ParsePath("signingKey")); v.Exists() {
		s, err := v.String()
		if err != nil {
			return nil, l.Diagnose(err)
		}
		if !filepath.IsAbs(s) {
			s = filepath.Join(cfg.Dir, s)
		}
		sc.SigningKey = s
	}
	if !cfg.Value.LookupPath(cue.ParsePath(eval.PolicyField)).Exists() {
		return sc, nil
	}
	set, err := Load(l, cfg, nil)
	if err != nil {
		return nil, err
	}
	if sc.Trust, err = set.Trust(); err != nil {
		return nil, err
	}
	for _, tp := range sc.Trust {
		tp.RelTo(cwd)
	}
	return sc, nil
}
