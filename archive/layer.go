package archive

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
)

// LayerPrefix is where a layer puts its store path: a path's layer holds
// heph/store/<hash>-<name> and what is below it, so that layers unpacked
// in order into one directory give the logical store.
const LayerPrefix = "heph/store/"

// gzipLevel is the compression of every layer. Compression must never
// vary between machines (the layer's digest would): one level, no name,
// no time in the header; and the diff ID, which signatures bind, does not
// depend on compression at all.
const gzipLevel = gzip.BestSpeed

// layerName is the tar name of p's root in its layer.
func layerName(p store.Path) string { return LayerPrefix + p.Base() }

// LayerInfo is what writing a layer gives: the digest and size of its
// compressed bytes, and its diff ID (the sha256 of the tar).
type LayerInfo struct {
	Digest v1.Hash
	Size   int64
	DiffID v1.Hash
}

// WriteLayer writes the layer of the store path p, whose content is at
// root, to w: fstree's reproducible tar of the tree under
// heph/store/<hash>-<name>, gzip-compressed at one fixed level.
func WriteLayer(w io.Writer, root string, p store.Path) (*LayerInfo, error) {
	digest := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, digest)}
	zw, err := gzip.NewWriterLevel(cw, gzipLevel)
	if err != nil {
		return nil, err
	}
	diff := sha256.New()
	if err := fstree.WriteTar(io.MultiWriter(zw, diff), root, layerName(p)); err != nil {
		return nil, fmt.Errorf("writing the layer of %s: %w", p, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("writing the layer of %s: %w", p, err)
	}
	return &LayerInfo{Digest: sha256Hash(digest), Size: cw.n, DiffID: sha256Hash(diff)}, nil
}

// DiffID returns the diff ID of the store path p whose content is at
// root: the sha256 of its layer's tar, what statements bind. It costs one
// read of the tree and no compression.
func DiffID(root string, p store.Path) (v1.Hash, error) {
	h := sha256.New()
	if err := fstree.WriteTar(h, root, layerName(p)); err != nil {
		return v1.Hash{}, fmt.Errorf("the layer digest of %s: %w", p, err)
	}
	return sha256Hash(h), nil
}

func sha256Hash(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
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

// errRefused marks what a hostile or broken archive is refused for: the
// same mark as fstree's, whose extraction reads every layer.
var errRefused = fstree.ErrRefused

// printable quotes a name from an archive for a message.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// LayerLimits bound what reading one layer may cost; zero fields take
// DefaultLimits'.
type LayerLimits struct {
	// MaxBytes is the most the uncompressed tar may hold (a
	// decompression bomb is refused when it passes this).
	MaxBytes int64
	// MaxEntries is the most entries the tar may hold.
	MaxEntries int
}

// ReadLayer reads the compressed layer r of the store path p into dst
// (which must not exist), and checks that its bytes are those described:
// the compressed bytes must hash to want.Digest and number want.Size, the
// tar to diffID, and its files and symlink targets hold at most size
// bytes. It trusts nothing in them (docs/trust.md, "Reading a
// layer"): only directories, regular files and symlinks under
// heph/store/<p's base>, each after its directory, none twice, no
// whiteouts, no setuid, setgid or sticky bits, no extended headers but a
// long name, and no more than lim allows. On an error, what was extracted
// is left at dst for the caller to remove.
func ReadLayer(r io.Reader, want v1.Descriptor, diffID v1.Hash, p store.Path, size int64, dst string, lim LayerLimits) error {
	if err := readLayer(r, want, diffID, p, size, dst, lim); err != nil {
		return fmt.Errorf("layer %s of %s: %w", want.Digest, p, err)
	}
	return nil
}

func readLayer(r io.Reader, want v1.Descriptor, diffID v1.Hash, p store.Path, size int64, dst string, lim LayerLimits) error {
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultLimits.MaxBytes
	}
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = DefaultLimits.MaxEntries
	}
	digest := sha256.New()
	// One byte more than announced, to notice a longer blob. The
	// counting reader is a ByteReader, so gzip reads no further than its
	// stream's end: what follows is seen below.
	compressed := &countingReader{r: bufio.NewReader(io.TeeReader(io.LimitReader(r, want.Size+1), digest))}
	zr, err := gzip.NewReader(compressed)
	if err != nil {
		return fmt.Errorf("not gzip: %w", err)
	}
	zr.Multistream(false)
	diff := sha256.New()
	bomb := &limitedReader{r: zr, max: lim.MaxBytes}
	tarStream := io.TeeReader(bomb, diff)
	if err := fstree.ExtractTarLimits(tarStream, dst, layerName(p), size, lim.MaxEntries); err != nil {
		return err
	}
	// The rest of the tar stream (the end blocks) counts for the diff ID;
	// nothing may follow the gzip stream.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return err
	}
	if n, _ := io.Copy(io.Discard, compressed); n > 0 {
		return fmt.Errorf("%w: data after the gzip stream", errRefused)
	}
	if compressed.n != want.Size {
		return fmt.Errorf("%w: %d bytes, the manifest says %d", errRefused, compressed.n, want.Size)
	}
	if got := sha256Hash(digest); got != want.Digest {
		return fmt.Errorf("%w: the bytes hash to %s, not to their digest", errRefused, got)
	}
	if got := sha256Hash(diff); got != diffID {
		return fmt.Errorf("%w: the tar hashes to %s, not to the diff id %s", errRefused, got, diffID)
	}
	return nil
}

type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// limitedReader fails, rather than ending, once more than max bytes
// come.
type limitedReader struct {
	r      io.Reader
	n, max int64
}

func (l *limitedReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if l.n >= l.max {
		// At the limit: one more byte means too many.
		n, err := l.r.Read(b[:1])
		if n > 0 {
			return 0, fmt.Errorf("%w: it expands past the limit of %d bytes (a decompression bomb?)", errRefused, l.max)
		}
		return 0, err
	}
	if rem := l.max - l.n; int64(len(b)) > rem {
		b = b[:rem]
	}
	n, err := l.r.Read(b)
	l.n += int64(n)
	return n, err
}
