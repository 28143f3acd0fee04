package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// PassphraseFileEnv names the file whose first line is the passphrase of
// the store owner's signingKey, when realize attests with it unattended.
const PassphraseFileEnv = "HEPHC_PASSPHRASE_FILE"

// keyAttester attests, with the store owner's key, what this store builds
// and reproduces: a realize.Attester.
type keyAttester struct {
	st  *store.Store
	key *trust.SecretKey
	now func() time.Time
}

var _ realize.Attester = (*keyAttester)(nil)

// Built attests that the key's owner built info's path, at the time it
// was registered (so that hephc sign later gives the same envelope).
func (a *keyAttester) Built(ctx context.Context, info *store.PathInfo) error {
	_, err := attestPath(ctx, a.st, a.key, trust.Built, info.Path, time.Unix(info.Registered, 0))
	return err
}

// Reproduced attests that the key's owner rebuilt info's path, now, and
// got the bytes the store has.
func (a *keyAttester) Reproduced(ctx context.Context, info *store.PathInfo) error {
	_, err := attestPath(ctx, a.st, a.key, trust.Reproduced, info.Path, a.now())
	return err
}

// attestPath signs with k a statement of kind about p as st has it (its
// subject: content hash, layer digest, references, deriver) at when, and
// keeps the envelope in st's attestations; added is false when it was
// there already.
func attestPath(ctx context.Context, st *store.Store, k *trust.SecretKey, kind trust.Kind, p store.Path, when time.Time) (added bool, err error) {
	sub, err := archive.StoreSubject(ctx, st, p)
	if err != nil {
		return false, err
	}
	env, err := trust.Sign(&trust.Claim{Kind: kind, Subject: sub, Builder: BuilderID, Time: when}, k)
	if err != nil {
		return false, err
	}
	_, added, err = trust.StoreDir(st.Dir).Add(p.Base(), env)
	return added, err
}

// ownerAttester is the attester of the store owner's signingKey, or nil
// (no error) when the owner's config.cue names none. A key protected by a
// passphrase takes it from $HEPHC_PASSPHRASE_FILE.
func ownerAttester(e *env, st *store.Store) (realize.Attester, *trust.SecretKey, error) {
	owner, err := ownerConfig(e, st)
	if err != nil {
		return nil, nil, err
	}
	if owner.SigningKey == "" {
		return nil, nil, nil
	}
	k, err := readSecretKey(e, owner.SigningKey, e.getenv(PassphraseFileEnv))
	if errors.Is(err, trust.ErrPassphraseNeeded) {
		return nil, nil, fmt.Errorf("the store owner's signingKey %s is protected by a passphrase: set %s to a file holding it, so that builds are attested", owner.SigningKey, PassphraseFileEnv)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("the store owner's signingKey: %w", err)
	}
	return &keyAttester{st: st, key: k, now: time.Now}, k, nil
}

// localAttester is what attests a realize's builds: the store owner's
// signingKey, if there is one; nil for a dry run.
func localAttester(e *env, st *store.Store, dry bool) (realize.Attester, error) {
	if dry {
		return nil, nil
	}
	att, _, err := ownerAttester(e, st)
	return att, err
}

// trustAdmission admits a path from another store when every trust
// policy holds for it on the attestations that store keeps beside it —
// the store owner's policies with every group rule applying (as on
// import: the owner's groups cannot be moved by a configuration), the
// others with the attribute the configuration writes it at — and keeps
// the envelopes that counted: the judgement of archive.Import and of the
// binary caches, for realize.Options.Substitutes and realize.Substitute.
type trustAdmission struct {
	owner, others []*trust.Policy
	now           time.Time
	keep          trust.Dir
}

var _ realize.Admission = (*trustAdmission)(nil)

func (a *trustAdmission) Admit(ctx context.Context, c *realize.Candidate) error {
	p := c.Info.Path
	if !c.Pinned && len(a.owner)+len(a.others) == 0 {
		return fmt.Errorf("no trust policy says whom to trust (the store owner's %s has no policy.trust)", OwnerConfigFile)
	}
	diff, err := archive.DiffID(c.Dir, p)
	if err != nil {
		return err
	}
	sub := archive.SubjectOf(p, c.Info.ContentHash, diff, c.Info.References, c.Info.Deriver)
	var envs [][]byte
	if src, ok := c.Source.(*store.Store); ok {
		if envs, err = trust.StoreDir(src.Dir).List(p.Base()); err != nil {
			return err
		}
	}
	cand := trust.Candidate{Subject: sub, Pinned: c.Pinned}
	j := trust.Judge(a.owner, cand, envs, a.now)
	cand.Attr = c.Attr
	k := trust.Judge(a.others, cand, envs, a.now)
	var problems []string
	for _, v := range append(j.Violations(), k.Violations()...) {
		problems = append(problems, strings.TrimPrefix(v.Error(), v.Path+": "))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	if a.keep != "" {
		for _, env := range append(j.Counted, k.Counted...) {
			if _, _, err := a.keep.Add(p.Base(), env); err != nil {
				return err
			}
		}
	}
	return nil
}
