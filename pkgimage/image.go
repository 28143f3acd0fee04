package pkgimage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
)

// MaxLayers is the most layers an image has by default: overlay file
// systems stop at about 127, and nixery's images keep to 100.
const MaxLayers = 100

// Annotations of an image's manifest and layers, besides the OCI ones.
const (
	// AnnotationLayerPaths lists the store paths a layer holds,
	// space-separated.
	AnnotationLayerPaths = "dev.hephc.layer.paths"
)

// Source is what an image is made from: a store's valid paths.
type Source interface {
	LockGC(ctx context.Context, exclusive bool) (*store.Lock, error)
	QueryPathInfo(ctx context.Context, p store.Path) (*store.PathInfo, bool, error)
	Closure(ctx context.Context, ps ...store.Path) ([]store.Path, error)
	Physical(p store.Path) string
}

// Options describe the image.
type Options struct {
	// Name and Version label the image (org.opencontainers.image.title
	// and .version); Name defaults to the root's store name.
	Name, Version string
	// Architecture is the image's GOARCH-style architecture; "" means
	// amd64.
	Architecture string
	// MaxLayers bounds the layers; 0 means MaxLayers.
	MaxLayers int
	// Tag, when not "", is the image's org.opencontainers.image.ref.name
	// in the layout's index.json.
	Tag string
}

// Layer is one layer of an image: the store paths it holds.
type Layer struct {
	Paths  []store.Path
	Digest v1.Hash
	DiffID v1.Hash
	Size   int64
}

// Image is an image written as an OCI image layout.
type Image struct {
	// Dir is the layout's directory.
	Dir string
	// Manifest is the image manifest's descriptor.
	Manifest v1.Descriptor
	Layers   []Layer
	// Config is the image's configuration.
	Config v1.ConfigFile
}

// Img returns the image as go-containerregistry's v1.Image, read from its
// layout.
func (im *Image) Img() (v1.Image, error) {
	return layout.Path(im.Dir).Image(im.Manifest.Digest)
}

// Write writes the image of the valid store path root into dir (which
// must be missing or empty) as an OCI image layout, and returns it.
//
// The layers are the paths of root's closure, in dependency order (a
// path after those it refers to, ties by store path), one path a layer
// — the archive's layer of that path, the same blob a binary cache
// holds. When the closure has more paths than the layers allowed, the
// MaxLayers-1 largest paths (ties by store path) keep a layer each and
// all the others share one last layer, in dependency order. The config
// sets PATH to root's bin/ and, when bin/ holds exactly one program,
// Cmd to it (to root itself when root is one executable file); no time
// but the epoch, no host, no user is recorded.
func Write(ctx context.Context, src Source, root store.Path, dir string, opts Options) (*Image, error) {
	gcLock, err := src.LockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("writing the image of %s to %s: the directory is not empty", root, dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	groups, err := layerGroups(ctx, src, root, opts.MaxLayers)
	if err != nil {
		return nil, err
	}
	l, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("writing the image of %s: %w", root, err)
	}
	im := &Image{Dir: dir}
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		layer, err := writeLayer(l, src, g)
		if err != nil {
			return nil, err
		}
		im.Layers = append(im.Layers, *layer)
	}
	im.Config, err = config(src, root, im.Layers, opts)
	if err != nil {
		return nil, err
	}
	cfgBytes, err := json.Marshal(im.Config)
	if err != nil {
		return nil, err
	}
	cfgDesc, err := writeBlob(l, cfgBytes)
	if err != nil {
		return nil, err
	}
	cfgDesc.MediaType = types.OCIConfigJSON
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfgDesc, Annotations: labels(root, opts)}
	for _, layer := range im.Layers {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: archive.LayerMediaType, Size: layer.Size, Digest: layer.Digest,
			Annotations: map[string]string{AnnotationLayerPaths: joinPaths(layer.Paths)}})
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	im.Manifest, err = writeBlob(l, mb)
	if err != nil {
		return nil, err
	}
	im.Manifest.MediaType = types.OCIManifestSchema1
	desc := im.Manifest
	if opts.Tag != "" {
		desc.Annotations = map[string]string{"org.opencontainers.image.ref.name": opts.Tag}
	}
	if err := l.AppendDescriptor(desc); err != nil {
		return nil, err
	}
	return im, nil
}

// layerGroups splits root's closure into the paths of each layer.
func layerGroups(ctx context.Context, src Source, root store.Path, maxLayers int) ([][]store.Path, error) {
	if maxLayers <= 0 {
		maxLayers = MaxLayers
	}
	if _, ok, err := src.QueryPathInfo(ctx, root); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%s is not a valid path of the store", root)
	}
	closure, err := src.Closure(ctx, root)
	if err != nil {
		return nil, err
	}
	infos := map[store.Path]*store.PathInfo{}
	for _, p := range closure {
		info, ok, err := src.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s, in the closure of %s, is not valid", p, root)
		}
		infos[p] = info
	}
	order := dependencyOrder(closure, infos)
	if len(order) <= maxLayers {
		groups := make([][]store.Path, len(order))
		for i, p := range order {
			groups[i] = []store.Path{p}
		}
		return groups, nil
	}
	bySize := slices.Clone(order)
	slices.SortStableFunc(bySize, func(a, b store.Path) int {
		if sa, sb := infos[a].Size, infos[b].Size; sa != sb {
			if sa > sb {
				return -1
			}
			return 1
		}
		return strings.Compare(a.String(), b.String())
	})
	own := map[store.Path]bool{}
	for _, p := range bySize[:maxLayers-1] {
		own[p] = true
	}
	var groups [][]store.Path
	var rest []store.Path
	for _, p := range order {
		if own[p] {
			groups = append(groups, []store.Path{p})
		} else {
			rest = append(rest, p)
		}
	}
	return append(groups, rest), nil
}

// dependencyOrder orders ps so that each path comes after the paths it
// refers to; ties by store path.
func dependencyOrder(ps []store.Path, infos map[store.Path]*store.PathInfo) []store.Path {
	sorted := slices.Clone(ps)
	slices.SortFunc(sorted, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) })
	var out []store.Path
	done := map[store.Path]bool{}
	var visit func(p store.Path)
	visit = func(p store.Path) {
		if done[p] {
			return
		}
		done[p] = true
		for _, r := range infos[p].References {
			visit(r)
		}
		out = append(out, p)
	}
	for _, p := range sorted {
		visit(p)
	}
	return out
}

// writeLayer writes the layer of paths into the layout: the archive's
// layer of one path, or one tar of several, compressed as the archive
// compresses.
func writeLayer(l layout.Path, src Source, paths []store.Path) (*Layer, error) {
	blobs := filepath.Join(string(l), "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(blobs, ".layer-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	var li *archive.LayerInfo
	if len(paths) == 1 {
		li, err = archive.WriteLayer(f, src.Physical(paths[0]), paths[0])
	} else {
		li, err = writeMerged(f, src, paths)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), filepath.Join(blobs, li.Digest.Hex)); err != nil {
		return nil, err
	}
	return &Layer{Paths: paths, Digest: li.Digest, DiffID: li.DiffID, Size: li.Size}, nil
}

// writeMerged writes one layer holding several paths: the entries of
// each path's reproducible tar, path after path, in one tar stream,
// compressed as a path's layer is.
func writeMerged(w io.Writer, src Source, paths []store.Path) (*archive.LayerInfo, error) {
	digest := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, digest)}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed) // as the archive compresses a path's layer
	if err != nil {
		return nil, err
	}
	diff := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, diff))
	for _, p := range paths {
		if err := copyTar(tw, src.Physical(p), p); err != nil {
			return nil, fmt.Errorf("writing the layer of %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &archive.LayerInfo{Digest: hashOf(digest.Sum(nil)), Size: cw.n, DiffID: hashOf(diff.Sum(nil))}, nil
}

// copyTar writes the entries of p's reproducible tar (fstree.WriteTar,
// what its own layer holds) to tw.
func copyTar(tw *tar.Writer, root string, p store.Path) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(fstree.WriteTar(pw, root, archive.LayerPrefix+p.Base())) }()
	defer pr.Close()
	tr := tar.NewReader(pr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// config is the image's configuration.
func config(src Source, root store.Path, layers []Layer, opts Options) (v1.ConfigFile, error) {
	arch := opts.Architecture
	if arch == "" {
		arch = "amd64"
	}
	epoch := v1.Time{Time: time.Unix(0, 0).UTC()}
	bin := root.String() + "/bin"
	cfg := v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      epoch,
		Config:       v1.Config{Env: []string{"PATH=" + bin}, Labels: labels(root, opts)},
		RootFS:       v1.RootFS{Type: "layers"},
	}
	fi, err := os.Lstat(src.Physical(root))
	if err != nil {
		return cfg, err
	}
	switch {
	case fi.Mode().IsRegular() && fi.Mode()&0o111 != 0:
		// A path that is one program: it is the command.
		cfg.Config.Cmd = []string{root.String()}
	case fi.IsDir():
		entries, err := os.ReadDir(filepath.Join(src.Physical(root), "bin"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return cfg, err
		}
		if len(entries) == 1 {
			cfg.Config.Cmd = []string{bin + "/" + entries[0].Name()}
		}
	}
	for _, layer := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, layer.DiffID)
		cfg.History = append(cfg.History, v1.History{Created: epoch, CreatedBy: "hephc: " + joinPaths(layer.Paths), Comment: "store paths"})
	}
	return cfg, nil
}

// labels are the image's labels and its manifest's annotations.
func labels(root store.Path, opts Options) map[string]string {
	name := opts.Name
	if name == "" {
		name = root.Name
	}
	m := map[string]string{
		"org.opencontainers.image.title": name,
		archive.AnnotationPath:           root.String(),
	}
	if opts.Version != "" {
		m["org.opencontainers.image.version"] = opts.Version
	}
	return m
}

func joinPaths(ps []store.Path) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

func writeBlob(l layout.Path, b []byte) (v1.Descriptor, error) {
	sum := sha256.Sum256(b)
	d := v1.Descriptor{Size: int64(len(b)), Digest: hashOf(sum[:])}
	return d, l.WriteBlob(d.Digest, io.NopCloser(strings.NewReader(string(b))))
}

func hashOf(sum []byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
