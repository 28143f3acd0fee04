package registry

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/dirhash"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// Want is a path a store lacks and may substitute: what the store's
// graph says of it.
type Want struct {
	Path store.Path
	// CA is a fixed-output path's pin, "" for any other; GoModule is
	// module@version of an h1: pin.
	CA, GoModule string
	// References are the paths its content may refer to (those its
	// derivation's inputs make, whatever their validity): the content is
	// scanned for each, so that a manifest cannot hide a reference.
	References []store.Path
	// Attr is where the configuration writes the path, "" if unknown.
	Attr string
}

// Target is what Substitute needs of a store: its one way in, a place
// for content on its way there, and which paths it has.
type Target interface {
	LockGC(ctx context.Context, exclusive bool) (*store.Lock, error)
	TempDir(pattern string) (string, error)
	Install(ctx context.Context, req store.InstallRequest) (*store.PathInfo, error)
	ValidPaths(ctx context.Context, ps []store.Path) (map[store.Path]bool, error)
}

// SubstituteOptions say where paths come from and what is admitted.
type SubstituteOptions struct {
	// Caches are the repositories asked, in order: a path comes from the
	// first that has it and whose copy is admitted.
	Caches []Ref
	// OwnerPolicies are the store owner's trust policies. Each must hold
	// for every path, judged as when importing an archive (every rule
	// with groups applies), so that no configuration can move a path
	// out of a group the owner guards.
	OwnerPolicies []*trust.Policy
	// Policies are the configuration's: each must hold too, judged with
	// the attribute the configuration writes the path at.
	Policies []*trust.Policy
	// Now is the time keys' expiry is judged at.
	Now time.Time
	// Attestations, when not "", is where the store keeps attestations:
	// the envelopes that counted for a path are kept there.
	Attestations trust.Dir
	// Jobs is how many paths are looked up or fetched at once; 0 means 8.
	Jobs int
	// Limits bound each layer; zero fields take archive.DefaultLimits'.
	Limits archive.LayerLimits
	// Events receives progress, one event at a time; nil discards it.
	Events func(Event)
}

// EventKind says what happened to a path.
type EventKind int

const (
	// EventAdmitted: a cache has the path and the policies admit it; its
	// layer is to be fetched (Bytes is its size).
	EventAdmitted EventKind = iota
	// EventFetched: Bytes more bytes of layers came.
	EventFetched
	// EventSubstituted: the path is valid in the store.
	EventSubstituted
	// EventRefused: the path is not substituted (Reason says why).
	EventRefused
	// EventUnreachable: a cache cannot be asked at all (Reason says
	// why): its paths count as in no cache.
	EventUnreachable
)

// Event is progress of a substitution.
type Event struct {
	Kind   EventKind
	Path   store.Path
	Bytes  int64
	Reason string
}

// Refusal is a path a cache has that was not substituted, and why.
type Refusal struct {
	Path   store.Path
	Reason string
}

// SubstituteResult says what Substitute did.
type SubstituteResult struct {
	// Substituted are the paths made valid, in the order installed.
	Substituted []store.Path
	// Refused are the paths some cache has but that were not admitted or
	// failed their checks, sorted; Missing those no cache has.
	Refused []Refusal
	Missing []store.Path
	// Bytes is the size of the layers fetched.
	Bytes int64
	// Unreachable says, for each cache that could not be asked, why.
	Unreachable []string
}

// Substitute makes the paths of wants that st lacks valid from the
// caches, where a cache has them and they are admitted: a path's
// manifest must be the one its graph describes (path, deriver, pin), each
// policy must admit it on its attestations (a fixed-output path on its
// pin), its references must be valid or substituted first, and its
// layer must hash to its digests and unpack (archive.ReadLayer, which
// refuses anything hostile) into a tree with the manifest's content hash
// and references, installed through st.Install. A path that fails any
// of this is refused, and the reason given; nothing of it is registered.
// Only a cancelled ctx or a store that cannot be read is an error.
func (c *Client) Substitute(ctx context.Context, st Target, wants []Want, opts SubstituteOptions) (*SubstituteResult, error) {
	gcLock, err := st.LockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	s := &substitution{c: c, st: st, opts: opts, res: &SubstituteResult{}}
	if s.opts.Jobs <= 0 {
		s.opts.Jobs = 8
	}
	if s.opts.Limits.MaxBytes <= 0 {
		s.opts.Limits.MaxBytes = archive.DefaultLimits.MaxBytes
	}
	if s.opts.Limits.MaxEntries <= 0 {
		s.opts.Limits.MaxEntries = archive.DefaultLimits.MaxEntries
	}
	var all []store.Path
	for _, w := range wants {
		all = append(all, w.Path)
	}
	if s.valid, err = st.ValidPaths(ctx, all); err != nil {
		return nil, err
	}
	seen := map[store.Path]bool{}
	var todo []Want
	for _, w := range wants {
		if !s.valid[w.Path] && !seen[w.Path] {
			seen[w.Path] = true
			todo = append(todo, w)
		}
	}
	if len(todo) == 0 {
		return s.res, nil
	}
	scratch, err := st.TempDir("add-substitute-manifests-")
	if err != nil {
		return nil, err
	}
	defer fstree.RemoveTree(scratch)
	s.readers = make([]*reader, len(opts.Caches))
	s.readerErrs = make([]error, len(opts.Caches))
	for i, ref := range opts.Caches {
		if s.readers[i], s.readerErrs[i] = c.reader(ctx, ref); s.readerErrs[i] != nil {
			s.res.Unreachable = append(s.res.Unreachable, s.readerErrs[i].Error())
			s.emit(Event{Kind: EventUnreachable, Reason: s.readerErrs[i].Error()})
		}
	}
	// Look up every path in the caches and judge it, in parallel.
	offers := make([]*offer, len(todo))
	if err := forEach(ctx, s.opts.Jobs, len(todo), func(i int) error {
		offers[i] = s.lookup(ctx, todo[i], scratch)
		return nil
	}); err != nil {
		return nil, err
	}
	admitted := map[store.Path]*offer{}
	for i, o := range offers {
		switch {
		case o.found != nil:
			admitted[todo[i].Path] = o
		case len(o.reasons) > 0:
			s.refuse(todo[i].Path, strings.Join(o.reasons, "; "))
		default:
			s.res.Missing = append(s.res.Missing, todo[i].Path)
		}
	}
	s.dropUnreferenced(admitted)
	if err := s.install(ctx, admitted); err != nil {
		return nil, err
	}
	slices.SortFunc(s.res.Refused, func(a, b Refusal) int { return strings.Compare(a.Path.String(), b.Path.String()) })
	slices.SortFunc(s.res.Missing, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) })
	return s.res, nil
}

// substitution is one run of Substitute.
type substitution struct {
	c          *Client
	st         Target
	opts       SubstituteOptions
	valid      map[store.Path]bool
	readers    []*reader
	readerErrs []error

	mu  sync.Mutex // res, events
	res *SubstituteResult
}

// offer is what the caches say of one wanted path: the copy admitted,
// or why none was.
type offer struct {
	want    Want
	found   *found
	counted [][]byte // the envelopes that counted
	reasons []string
}

func (s *substitution) emit(ev Event) {
	if s.opts.Events != nil {
		s.opts.Events(ev)
	}
}

func (s *substitution) refuse(p store.Path, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res.Refused = append(s.res.Refused, Refusal{Path: p, Reason: reason})
	s.emit(Event{Kind: EventRefused, Path: p, Reason: reason})
}

// lookup asks each cache in turn for w's path until one has a copy the
// policies admit.
func (s *substitution) lookup(ctx context.Context, w Want, scratch string) *offer {
	o := &offer{want: w}
	for i, r := range s.readers {
		ref := s.opts.Caches[i]
		if s.readerErrs[i] != nil {
			continue
		}
		f, ok, err := r.lookup(ctx, w.Path, scratch)
		if err != nil {
			o.reasons = append(o.reasons, fmt.Sprintf("%s: %v", ref, err))
			continue
		}
		if !ok {
			continue
		}
		counted, why := s.admit(f, w)
		if why != "" {
			o.reasons = append(o.reasons, fmt.Sprintf("%s: %s", ref, why))
			continue
		}
		o.found, o.counted, o.reasons = f, counted, nil
		s.mu.Lock()
		s.emit(Event{Kind: EventAdmitted, Path: w.Path, Bytes: f.entry.Layer.Size})
		s.mu.Unlock()
		return o
	}
	return o
}

// admit judges f, a copy of w's path: its manifest must describe the
// path the graph wants, and every policy must admit it. It returns the
// envelopes that counted, or why the copy is not admitted.
func (s *substitution) admit(f *found, w Want) (counted [][]byte, why string) {
	e := f.entry
	switch {
	case e.Deriver != w.Path.Hash:
		return nil, fmt.Sprintf("its manifest says derivation %s made it, not %s", e.Deriver, w.Path.Hash)
	case e.CA != w.CA && w.CA == "":
		return nil, fmt.Sprintf("its manifest gives the pin %s, but its derivation has none", e.CA)
	case e.CA != w.CA:
		return nil, fmt.Sprintf("its manifest gives the pin %q, its derivation %s", e.CA, w.CA)
	case w.CA != "" && len(e.References) > 0:
		return nil, "a fixed-output path with references"
	case strings.HasPrefix(w.CA, "h1:") && e.GoModule != w.GoModule:
		return nil, fmt.Sprintf("its manifest says module %s, the derivation %s", e.GoModule, w.GoModule)
	case strings.HasPrefix(w.CA, "blake3:") && e.ContentHash.String() != w.CA:
		return nil, fmt.Sprintf("its manifest's content hash %s is not its pin %s", e.ContentHash, w.CA)
	}
	pinned := w.CA != ""
	if !pinned && len(s.opts.OwnerPolicies)+len(s.opts.Policies) == 0 {
		return nil, "no trust policy says whom to trust (the store owner's config.cue has no policy.trust, nor has the configuration)"
	}
	keys := trust.Keys{}
	for _, p := range slices.Concat(s.opts.OwnerPolicies, s.opts.Policies) {
		for id, k := range p.Keys() {
			keys[id] = k
		}
	}
	subject := e.Subject()
	var atts []trust.Attestation
	notes := slices.Clone(f.skipped)
	for _, env := range f.envelopes {
		v, err := trust.VerifyEnvelope(env, keys)
		if err != nil {
			notes = append(notes, fmt.Sprintf("envelope %s: %v", trust.EnvelopeDigest(env), err))
			continue
		}
		for _, p := range v.Problems {
			notes = append(notes, p.String())
		}
		if len(v.Attestations) > 0 && v.Attestations[0].Subject.Equal(subject) {
			counted = append(counted, env)
		}
		atts = append(atts, v.Attestations...)
	}
	c := trust.Candidate{Subject: subject, Pinned: pinned}
	ds := trust.Admit(s.opts.OwnerPolicies, c, atts, s.opts.Now)
	c.Attr = w.Attr
	ds = append(ds, trust.Admit(s.opts.Policies, c, atts, s.opts.Now)...)
	var problems []string
	for _, d := range ds {
		for _, v := range d.Violations {
			v.NotCounted = append(slices.Clone(d.Ignored), notes...)
			problems = append(problems, strings.TrimPrefix(v.Error(), v.Path+": "))
		}
	}
	if len(problems) > 0 {
		return nil, strings.Join(problems, "; ")
	}
	return counted, ""
}

// dropUnreferenced refuses, until none is left, each admitted path one
// of whose references is neither valid nor admitted, and each that
// refers to itself through other paths (which no real store path does):
// a path is installed only after all it refers to.
func (s *substitution) dropUnreferenced(admitted map[store.Path]*offer) {
	for changed := true; changed; {
		changed = false
		for _, p := range sortedPaths(admitted) {
			for _, r := range admitted[p].found.entry.References {
				if r != p && !s.valid[r] && admitted[r] == nil {
					s.refuse(p, fmt.Sprintf("its reference %s is neither in the store nor substituted", r))
					delete(admitted, p)
					changed = true
					break
				}
			}
		}
		for _, p := range inCycles(admitted) {
			s.refuse(p, "it refers to itself through other paths")
			delete(admitted, p)
			changed = true
		}
	}
}

// inCycles returns the admitted paths that refer to themselves through
// other admitted paths, sorted.
func inCycles(admitted map[store.Path]*offer) []store.Path {
	state := map[store.Path]int{} // 1 on the walk's stack, 2 done
	cyclic := map[store.Path]bool{}
	var visit func(p store.Path, stack []store.Path)
	visit = func(p store.Path, stack []store.Path) {
		state[p] = 1
		stack = append(stack, p)
		for _, r := range admitted[p].found.entry.References {
			if r == p || admitted[r] == nil {
				continue
			}
			switch state[r] {
			case 0:
				visit(r, stack)
			case 1:
				for i := len(stack) - 1; i >= 0; i-- {
					cyclic[stack[i]] = true
					if stack[i] == r {
						break
					}
				}
			}
		}
		state[p] = 2
	}
	for _, p := range sortedPaths(admitted) {
		if state[p] == 0 {
			visit(p, nil)
		}
	}
	var out []store.Path
	for _, p := range sortedPaths(admitted) {
		if cyclic[p] {
			out = append(out, p)
		}
	}
	return out
}

func sortedPaths(m map[store.Path]*offer) []store.Path {
	ps := make([]store.Path, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) })
	return ps
}

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
