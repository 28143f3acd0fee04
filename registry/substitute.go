package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

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
	// Admit, when not nil, says whether a path may come from the manifest
	// with this digest (realize --server: what a verified channel holds);
	// an error refuses that copy, with the error as its reason.
	Admit func(p store.Path, manifest string) error
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
		r, err := c.reader(ctx, ref)
		s.readers[i] = r
		if err != nil {
			s.giveUp(i, err)
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

// unusable reports whether cache i was given up on.
func (s *substitution) unusable(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readerErrs[i] != nil
}

// giveUp stops asking cache i, which cannot be reached or refuses to
// answer (err), and says so once.
func (s *substitution) giveUp(i int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readerErrs[i] != nil {
		return
	}
	s.readerErrs[i] = err
	s.res.Unreachable = append(s.res.Unreachable, err.Error())
	s.emit(Event{Kind: EventUnreachable, Reason: err.Error()})
}

// isDenied reports whether err is a registry's 401 or 403: credentials
// missing or refused.
func isDenied(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden)
}

// lookup asks each cache in turn for w's path until one has a copy the
// policies admit.
func (s *substitution) lookup(ctx context.Context, w Want, scratch string) *offer {
	o := &offer{want: w}
	for i, r := range s.readers {
		ref := s.opts.Caches[i]
		if s.unusable(i) {
			continue
		}
		f, ok, err := r.lookup(ctx, w.Path, scratch)
		if isDenied(err) {
			// Not this path's fault: the cache refuses us. Said once.
			s.giveUp(i, fmt.Errorf("%s: %w", ref, err))
			continue
		}
		if err != nil {
			o.reasons = append(o.reasons, fmt.Sprintf("%s: %v", ref, err))
			continue
		}
		if !ok {
			continue
		}
		if s.opts.Admit != nil {
			if err := s.opts.Admit(w.Path, f.entry.Manifest.Digest.String()); err != nil {
				o.reasons = append(o.reasons, fmt.Sprintf("%s: %v", ref, err))
				continue
			}
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
