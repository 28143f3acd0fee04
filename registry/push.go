package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// PushOptions say what Push sends besides the paths, and how.
type PushOptions struct {
	// Attestations, when not "", is where the store keeps attestations:
	// each path's are pushed as referrers of its manifest.
	Attestations trust.Dir
	// TempDir is where the archive is written on its way (the store's
	// directory, say); "" means the system's.
	TempDir string
	// Jobs is how many uploads run at once; 0 means 4.
	Jobs int
}

// PushResult says what Push did.
type PushResult struct {
	// Pushed are the paths whose manifests were written, Present those
	// the registry had already with the same manifest; both sorted.
	Pushed, Present []*archive.Entry
	// Conflicts are paths whose tag holds another manifest (other bytes
	// of the same derivation, pushed from another store): left as they
	// are, and their attestations not pushed.
	Conflicts []Conflict
	// Attestations counts the attestation manifests written (or found).
	Attestations int
	// LayerBytes is the size of the layers of the paths pushed; Uploaded
	// what was sent (blobs the registry had are not sent again).
	LayerBytes, Uploaded int64
}

// Conflict is a path whose tag in the registry holds another manifest.
type Conflict struct {
	Path         store.Path
	Ours, Theirs v1.Hash
}

// Tag returns the tag of p's artifact: its hash, 52 characters.
func Tag(p store.Path) string { return p.Hash.String() }

// Push writes the store paths ps of src to the repository ref: each as
// the archive's artifact of one path (its layer and manifest, exactly
// what hephc export writes) tagged with its hash, and its attestations as
// referrers of that manifest (the referrers API, or the tag schema where
// the registry has none). A tag already holding the same manifest is
// left alone; one holding another manifest is a conflict, never
// overwritten.
func (c *Client) Push(ctx context.Context, src archive.Source, ps []store.Path, ref Ref, opts PushOptions) (*PushResult, error) {
	if ref.Tag != "" {
		return nil, fmt.Errorf("pushing to %s: each path is tagged with its hash; give the repository without a tag", ref)
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	tmp, err := os.MkdirTemp(opts.TempDir, "hephc-push-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "oci")
	exp, err := archive.Export(ctx, src, ps, dir, archive.ExportOptions{Attestations: opts.Attestations})
	if err != nil {
		return nil, err
	}
	l, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := l.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	ropts := c.remoteOptions(ctx, ref, jobs)
	// One authenticated session for every request, not one a request.
	puller, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, err
	}
	pusher, err := remote.NewPusher(ropts...)
	if err != nil {
		return nil, err
	}
	ropts = append(ropts, remote.Reuse(puller), remote.Reuse(pusher))
	before := c.Uploaded()
	res := &PushResult{}

	// Which tags the registry has, and with which manifest.
	theirs := make([]*v1.Descriptor, len(exp.Entries))
	if err := forEach(ctx, jobs, len(exp.Entries), func(i int) error {
		d, err := remote.Head(ref.Repo.Tag(Tag(exp.Entries[i].Path)), ropts...)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pushing %s to %s: %w", exp.Entries[i].Path, ref, err)
		}
		theirs[i] = d
		return nil
	}); err != nil {
		return nil, err
	}
	todo := map[name.Reference]remote.Taggable{}
	pushed := map[v1.Hash]bool{} // path manifests now in the registry
	for i, e := range exp.Entries {
		switch {
		case theirs[i] == nil:
			img, err := l.Image(e.Manifest.Digest)
			if err != nil {
				return nil, err
			}
			todo[ref.Repo.Tag(Tag(e.Path))] = img
			res.Pushed = append(res.Pushed, e)
			res.LayerBytes += e.Layer.Size
			pushed[e.Manifest.Digest] = true
		case theirs[i].Digest == e.Manifest.Digest:
			res.Present = append(res.Present, e)
			pushed[e.Manifest.Digest] = true
		default:
			res.Conflicts = append(res.Conflicts, Conflict{Path: e.Path, Ours: e.Manifest.Digest, Theirs: theirs[i].Digest})
		}
	}
	if len(todo) > 0 {
		if err := remote.MultiWrite(todo, ropts...); err != nil {
			return nil, fmt.Errorf("pushing to %s: %w", ref, err)
		}
	}

	// Attestations, one subject's at a time: without the referrers API
	// the tag schema's index is read, changed and written back.
	bySubject := map[v1.Hash][]v1.Descriptor{}
	var subjects []v1.Hash
	for _, d := range im.Manifests {
		if d.ArtifactType != archive.EnvelopeMediaType {
			continue
		}
		m, err := manifestOf(l, d.Digest)
		if err != nil {
			return nil, err
		}
		if m.Subject == nil || !pushed[m.Subject.Digest] {
			continue
		}
		if bySubject[m.Subject.Digest] == nil {
			subjects = append(subjects, m.Subject.Digest)
		}
		bySubject[m.Subject.Digest] = append(bySubject[m.Subject.Digest], d)
	}
	sort.Slice(subjects, func(i, j int) bool { return subjects[i].Hex < subjects[j].Hex })
	var mu sync.Mutex
	if err := forEach(ctx, jobs, len(subjects), func(i int) error {
		for _, d := range bySubject[subjects[i]] {
			img, err := l.Image(d.Digest)
			if err != nil {
				return err
			}
			if err := remote.Write(ref.Repo.Digest(d.Digest.String()), img, ropts...); err != nil {
				return fmt.Errorf("pushing an attestation of %s to %s: %w", d.Annotations[archive.AnnotationPath], ref, err)
			}
			mu.Lock()
			res.Attestations++
			mu.Unlock()
		}
		return nil
	}); err != nil {
		return nil, err
	}
	res.Uploaded = c.Uploaded() - before
	return res, nil
}

func manifestOf(l layout.Path, h v1.Hash) (*v1.Manifest, error) {
	img, err := l.Image(h)
	if err != nil {
		return nil, err
	}
	return img.Manifest()
}

// forEach runs f(0…n-1), jobs at a time, and returns the first error
// (the others stop being started).
func forEach(ctx context.Context, jobs, n int, f func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for w := 0; w < min(jobs, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// isNotFound reports whether err is a registry's 404.
func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// PushImage writes the image img to ref, which must name a tag, and
// returns how many bytes were sent: blobs the repository has already
// (the layers of paths pushed to it, say) are not sent again, nor those
// the repository mountFrom of the same registry has (when not nil: a
// binary cache holding the paths' artifacts), which the registry mounts.
func (c *Client) PushImage(ctx context.Context, img v1.Image, ref Ref, mountFrom *Ref) (int64, error) {
	if ref.Tag == "" {
		return 0, fmt.Errorf("pushing an image to %s: give a tag (oci://HOST/REPOSITORY:TAG)", ref)
	}
	if mountFrom != nil {
		if mountFrom.Repo.RegistryStr() != ref.Repo.RegistryStr() {
			return 0, fmt.Errorf("pushing an image to %s: blobs mount only from a repository of the same registry, not %s", ref, mountFrom)
		}
		img = &mountable{Image: img, from: mountFrom.Repo.Tag("latest")}
	}
	before := c.Uploaded()
	if err := remote.Write(ref.Repo.Tag(ref.Tag), img, c.remoteOptions(ctx, ref, 4)...); err != nil {
		return 0, fmt.Errorf("pushing an image to %s: %w", ref, err)
	}
	return c.Uploaded() - before, nil
}

// mountable is an image whose layers the registry is asked to mount from
// another repository before they are uploaded.
type mountable struct {
	v1.Image
	from name.Reference
}

func (m *mountable) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = &remote.MountableLayer{Layer: l, Reference: m.from}
	}
	return out, nil
}

func (m *mountable) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return &remote.MountableLayer{Layer: l, Reference: m.from}, nil
}
