package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"hephc.dev/hephc/profile"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// A signed manifest is a directory: the manifest, and one detached
// signature per signer, each file named by the sha256 of its bytes.
const manifestSignatures = "signatures"

// generationManifest is the manifest of generation n of profileName (0:
// the current one): its roots and their closure with content hashes.
func generationManifest(ctx context.Context, st *store.Store, profileName string, n int) ([]byte, *profile.Generation, error) {
	gen, err := profile.Get(ctx, st, profileName, n)
	if err != nil {
		return nil, nil, err
	}
	m := &trust.Manifest{Type: trust.ManifestType, Roots: map[string]string{}}
	var roots []store.Path
	for attr, p := range gen.Roots {
		m.Roots[attr] = p.String()
		roots = append(roots, p)
	}
	closure, err := st.Closure(ctx, roots...)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range closure {
		info, ok, err := st.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, nil, err
		} else if !ok {
			return nil, nil, fmt.Errorf("%s is not valid in the store %s", p, st.Dir)
		}
		m.Paths = append(m.Paths, trust.ManifestPath{Path: p.String(), ContentHash: info.ContentHash.String()})
	}
	sort.Slice(m.Paths, func(i, j int) bool { return m.Paths[i].Path < m.Paths[j].Path })
	b, err := m.Marshal()
	return b, gen, err
}

// signManifest writes the manifest of a generation into dir (which may
// hold it already: then it must be the same bytes, so that every
// co-signer signs what their own store holds) and k's detached signature
// beside it.
func signManifest(e *env, st *store.Store, k *trust.SecretKey, dir, profileName string, n int) error {
	ctx := context.Background()
	b, gen, err := generationManifest(ctx, st, profileName, n)
	if err != nil {
		return err
	}
	file := filepath.Join(dir, trust.ManifestFile)
	old, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(file, b); err != nil {
			return err
		}
	case err != nil:
		return err
	case !bytes.Equal(old, b):
		return fmt.Errorf("%s is not the manifest of generation %d of %s in this store: what you built differs from what it lists (compare with hephc verify --manifest %s), so you cannot co-sign it", file, gen.Number, profileName, dir)
	}
	env, err := trust.SignManifest(b, k)
	if err != nil {
		return err
	}
	sigs := filepath.Join(dir, manifestSignatures)
	if err := os.MkdirAll(sigs, 0o755); err != nil {
		return err
	}
	sig := filepath.Join(sigs, strings.TrimPrefix(trust.EnvelopeDigest(env), "sha256:")+".json")
	if err := writeFileAtomic(sig, env); err != nil {
		return err
	}
	m, _ := trust.ParseManifest(b)
	fmt.Fprintf(e.stdout, "%s\n", sig)
	fmt.Fprintf(e.stderr, "signed the manifest of generation %d of %s (%d paths, sha256 %s) as %s (%s)\n", gen.Number, profileName, len(m.Paths), strings.TrimPrefix(trust.EnvelopeDigest(b), "sha256:"), k.Name, k.Public().ID())
	return nil
}

// verifyManifest checks the signed manifest in dir: every detached
// signature verified with the keys of policies, distinct people counted
// in each policy (each must reach threshold); and every path of it that
// st holds must have the content hash it lists.
func verifyManifest(e *env, st *store.Store, dir string, policies []*trust.Policy, threshold int) error {
	if len(policies) == 0 {
		return fmt.Errorf("verifying %s: no trust policy names the people whose signatures count: write one in the store's %s or give --policy FILE", dir, OwnerConfigFile)
	}
	b, err := readCapped(filepath.Join(dir, trust.ManifestFile), trust.MaxManifestSize)
	if err != nil {
		return err
	}
	m, err := trust.ParseManifest(b)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	keys := trust.Keys{}
	for _, p := range policies {
		for id, k := range p.Keys() {
			keys[id] = k
		}
	}
	sigs, err := os.ReadDir(filepath.Join(dir, manifestSignatures))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var ids []trust.KeyID
	var problems []string
	for _, s := range sigs {
		if !s.Type().IsRegular() || !strings.HasSuffix(s.Name(), ".json") {
			continue
		}
		env, err := readCapped(filepath.Join(dir, manifestSignatures, s.Name()), trust.MaxEnvelopeSize)
		if err != nil {
			return err
		}
		valid, probs, err := trust.VerifyManifestSignature(env, b, keys)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", s.Name(), err))
			continue
		}
		for _, p := range probs {
			problems = append(problems, fmt.Sprintf("%s: %s", s.Name(), p))
		}
		ids = append(ids, valid...)
	}
	failed := false
	for _, p := range policies {
		people, notCounted := p.Signers(ids, time.Now())
		status := "ok"
		if len(people) < threshold {
			status, failed = "FAIL", true
		}
		fmt.Fprintf(e.stdout, "%s: %d of %d people signed: %s (%s)\n", status, len(people), threshold, listOr(people, "nobody"), p.Source)
		for _, n := range notCounted {
			fmt.Fprintf(e.stdout, "\tnot counted: %s\n", n)
		}
	}
	for _, p := range problems {
		fmt.Fprintf(e.stdout, "\tnot counted: %s\n", p)
	}
	differ, have := 0, 0
	for _, mp := range m.Paths {
		p, err := store.ParsePath(mp.Path)
		if err != nil {
			return err
		}
		info, ok, err := st.QueryPathInfo(context.Background(), p)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		have++
		if info.ContentHash.String() != mp.ContentHash {
			differ++
			fmt.Fprintf(e.stdout, "FAIL: %s: the store has %s, the manifest lists %s\n", p, info.ContentHash, mp.ContentHash)
		}
	}
	fmt.Fprintf(e.stderr, "manifest of %d paths (sha256 %s): %d in this store, %d of them differ\n", len(m.Paths), strings.TrimPrefix(trust.EnvelopeDigest(b), "sha256:"), have, differ)
	switch {
	case failed:
		return fmt.Errorf("the manifest in %s has fewer than %d signers in a policy", dir, threshold)
	case differ > 0:
		return fmt.Errorf("%d paths of this store differ from the manifest in %s", differ, dir)
	}
	return nil
}

// readCapped reads the file name, refusing one larger than max bytes.
func readCapped(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", name, max)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// writeFileAtomic writes b to name through a temporary file renamed into
// place, read-only.
func writeFileAtomic(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o444)
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
