package registry

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/dirhash"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
)

// install fetches and checks the admitted paths' layers, Jobs at a time,
// and installs each once its references are.
func (s *substitution) install(ctx context.Context, admitted map[store.Path]*offer) error {
	done := map[store.Path]chan struct{}{}
	for p := range admitted {
		done[p] = make(chan struct{})
	}
	var (
		mu     sync.Mutex
		failed = map[store.Path]bool{}
		wg     sync.WaitGroup
		sem    = make(chan struct{}, s.opts.Jobs)
	)
	for _, p := range sortedPaths(admitted) {
		o := admitted[p]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[p])
			fail := func(why string) {
				mu.Lock()
				failed[p] = true
				mu.Unlock()
				if ctx.Err() == nil {
					s.refuse(p, why)
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				fail(ctx.Err().Error())
				return
			}
			tmp, err := s.stage(ctx, o)
			<-sem
			if tmp != "" {
				defer fstree.RemoveTree(tmp)
			}
			if err != nil {
				fail(err.Error())
				return
			}
			for _, r := range o.found.entry.References {
				if ch := done[r]; ch != nil && r != p {
					<-ch
					mu.Lock()
					bad := failed[r]
					mu.Unlock()
					if bad {
						fail(fmt.Sprintf("its reference %s was not substituted", r))
						return
					}
				}
			}
			if err := s.installOne(ctx, o, filepath.Join(tmp, "out")); err != nil {
				fail(err.Error())
				return
			}
			s.mu.Lock()
			s.res.Substituted = append(s.res.Substituted, p)
			s.emit(Event{Kind: EventSubstituted, Path: p, Bytes: o.found.entry.Layer.Size})
			s.mu.Unlock()
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// stage fetches o's layer into a temporary directory of the store, at
// out within it, and checks it: archive.ReadLayer's checks, and an h1:
// pin. It returns the directory, to be removed by the caller.
func (s *substitution) stage(ctx context.Context, o *offer) (string, error) {
	e := o.found.entry
	tmp, err := s.st.TempDir("add-substitute-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(tmp, "out")
	rc, err := o.found.from.blob(ctx, e.Layer.Digest)
	if err != nil {
		return tmp, fmt.Errorf("%s: %w", o.found.from.ref, err)
	}
	defer rc.Close()
	cr := &fetchCounter{r: rc, s: s, p: e.Path}
	err = archive.ReadLayer(cr, e.Layer, e.DiffID, e.Path, e.Size, out, s.opts.Limits)
	cr.flush()
	if err != nil {
		return tmp, fmt.Errorf("%s: %w", o.found.from.ref, err)
	}
	if strings.HasPrefix(o.want.CA, "h1:") {
		sum, err := dirhash.HashDir(out, o.want.GoModule, dirhash.Hash1)
		if err != nil {
			return tmp, err
		}
		if sum != o.want.CA {
			return tmp, fmt.Errorf("%s: module %s hashes to %s, its pin is %s", o.found.from.ref, o.want.GoModule, sum, o.want.CA)
		}
	}
	return tmp, nil
}

// installOne installs the staged tree of o at out through the store's one
// way in, which hashes it; the hash and references must be the
// manifest's (and a blake3: pin's), and then the envelopes that counted
// are kept.
func (s *substitution) installOne(ctx context.Context, o *offer, out string) error {
	e := o.found.entry
	// Scanned for: what the derivation may refer to, and what the
	// manifest says it does (valid or installed by now).
	cands := slices.Concat(o.want.References, e.References)
	_, err := s.st.Install(ctx, store.InstallRequest{
		Path: e.Path, Source: out, References: cands, Deriver: e.Deriver, CA: e.CA,
		Check: func(_ string, info *store.PathInfo) error {
			if info.ContentHash != e.ContentHash {
				return fmt.Errorf("%s: its content hashes to %s, its manifest says %s", o.found.from.ref, info.ContentHash, e.ContentHash)
			}
			if !slices.Equal(info.References, e.References) {
				return fmt.Errorf("%s: its content refers to %v, its manifest says %v", o.found.from.ref, info.References, e.References)
			}
			if strings.HasPrefix(e.CA, "blake3:") && info.ContentHash.String() != e.CA {
				return fmt.Errorf("%s: its content hashes to %s, its pin is %s", o.found.from.ref, info.ContentHash, e.CA)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if s.opts.Attestations != "" {
		for _, env := range o.counted {
			if _, _, err := s.opts.Attestations.Add(e.Path.Base(), env); err != nil {
				return fmt.Errorf("keeping an attestation: %w", err)
			}
		}
	}
	return nil
}

// fetchCounter counts the layer bytes read, for the result and the
// progress events (one per MiB).
type fetchCounter struct {
	r       io.Reader
	s       *substitution
	p       store.Path
	pending int64
}

func (f *fetchCounter) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	f.pending += int64(n)
	if f.pending >= 1<<20 {
		f.flush()
	}
	return n, err
}

func (f *fetchCounter) flush() {
	if f.pending == 0 {
		return
	}
	f.s.mu.Lock()
	f.s.res.Bytes += f.pending
	f.s.emit(Event{Kind: EventFetched, Path: f.p, Bytes: f.pending})
	f.s.mu.Unlock()
	f.pending = 0
}
