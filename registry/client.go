package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hephc.dev/hephc/archive"
)

// Client speaks to OCI registries. Its zero value uses the user's docker
// credentials and the default timeouts.
type Client struct {
	// Keychain finds a registry's credentials; nil means the user's
	// docker configuration (~/.docker/config.json and its credential
	// helpers), as every OCI tool reads it.
	Keychain authn.Keychain
	// Transport carries the requests; nil means a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// StallTimeout fails a request when the registry sends nothing for
	// this long; 0 means DefaultStallTimeout.
	StallTimeout time.Duration
	// Retries is how many times a push retries a request that failed in
	// a way that may pass (a 5xx, a reset connection); 0 means 3.
	Retries int

	mu       sync.Mutex
	uploaded int64
}

// Limits on what is read from a registry.
const (
	maxManifestSize  = 1 << 20 // as the archive's
	maxReferrersSize = 4 << 20
	maxEnvelopeSize  = 1 << 20
	// maxAttestations is the most attestations of one path that are read.
	maxAttestations = 256
)

func (c *Client) keychain() authn.Keychain {
	if c.Keychain != nil {
		return c.Keychain
	}
	return authn.DefaultKeychain
}

// transport returns the transport under authentication for ref's
// registry: plain HTTP refused unless ref allows it, stalls timed out,
// uploaded bytes counted.
func (c *Client) transport(ref Ref) http.RoundTripper {
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	stall := c.StallTimeout
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	plain := func(host string) bool { return ref.PlainHTTP && host == ref.Repo.RegistryStr() || IsLoopback(host) }
	return &guardedTransport{base: &countingTransport{base: base, c: c}, plainHTTP: plain, stall: stall}
}

// Uploaded returns how many bytes of request bodies c has sent (blobs and
// manifests pushed).
func (c *Client) Uploaded() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uploaded
}

// remoteOptions are go-containerregistry's options for writing to ref.
func (c *Client) remoteOptions(ctx context.Context, ref Ref, jobs int) []remote.Option {
	retries := c.Retries
	if retries <= 0 {
		retries = 3
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(c.transport(ref)),
		remote.WithAuthFromKeychain(c.keychain()),
		remote.WithJobs(max(jobs, 1)),
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 3, Jitter: 0.1, Steps: retries}),
		remote.WithReferrersTagFallback(true),
		remote.WithUserAgent("hephc"),
	}
}

// countingTransport counts the bytes of the request bodies it sends.
type countingTransport struct {
	base http.RoundTripper
	c    *Client
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		req = req.Clone(req.Context())
		req.Body = &countingBody{ReadCloser: req.Body, c: t.c}
	}
	return t.base.RoundTrip(req)
}

type countingBody struct {
	io.ReadCloser
	c *Client
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.mu.Lock()
	b.c.uploaded += int64(n)
	b.c.mu.Unlock()
	return n, err
}

// reader reads one repository: manifests, referrers and blobs, each
// capped and checked against its digest.
type reader struct {
	ref  Ref
	http *http.Client
	base url.URL // SCHEME://HOST/v2/REPO
}

// reader returns a reader of ref's repository, authenticated for pulls.
func (c *Client) reader(ctx context.Context, ref Ref) (*reader, error) {
	reg := ref.Repo.Registry
	auth, err := authn.Resolve(ctx, c.keychain(), reg)
	if err != nil {
		return nil, fmt.Errorf("%s: credentials: %w", ref, err)
	}
	t, err := transport.NewWithContext(ctx, reg, auth, c.transport(ref), []string{ref.Repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	scheme := "https"
	if ref.PlainHTTP {
		scheme = "http"
	}
	return &reader{ref: ref, http: &http.Client{Transport: t}, base: url.URL{Scheme: scheme, Host: reg.RegistryStr(), Path: "/v2/" + ref.Repo.RepositoryStr()}}, nil
}

func (r *reader) get(ctx context.Context, path string, query url.Values, accept ...string) (*http.Response, error) {
	u := r.base
	u.Path += path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	return r.http.Do(req)
}

// manifest returns the manifest reference (a tag or a digest) names, of
// one of the media types accept, at most max bytes, and its digest; found
// is false when the registry has no such manifest.
func (r *reader) manifest(ctx context.Context, reference string, max int64, accept ...string) (b []byte, digest v1.Hash, found bool, err error) {
	resp, err := r.get(ctx, "/manifests/"+reference, nil, accept...)
	if err != nil {
		return nil, v1.Hash{}, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, v1.Hash{}, false, nil
	}
	if err := checkStatus(resp); err != nil {
		return nil, v1.Hash{}, false, err
	}
	b, err = readCapped(resp.Body, max)
	if err != nil {
		return nil, v1.Hash{}, false, fmt.Errorf("manifest %s: %w", reference, err)
	}
	digest = sha256Of(b)
	if strings.HasPrefix(reference, "sha256:") && digest.String() != reference {
		return nil, v1.Hash{}, false, fmt.Errorf("manifest %s: its bytes hash to %s", reference, digest)
	}
	return b, digest, true, nil
}

// blob opens the blob d.
func (r *reader) blob(ctx context.Context, d v1.Hash) (io.ReadCloser, error) {
	resp, err := r.get(ctx, "/blobs/"+d.String(), nil)
	if err != nil {
		return nil, err
	}
	if err := checkStatus(resp); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return resp.Body, nil
}

// smallBlob reads the blob d describes, which must have its size (at most
// max) and hash to its digest.
func (r *reader) smallBlob(ctx context.Context, d v1.Descriptor, max int64) ([]byte, error) {
	if d.Size < 0 || d.Size > max {
		return nil, fmt.Errorf("blob %s: %d bytes, more than %d", d.Digest, d.Size, max)
	}
	rc, err := r.blob(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := readCapped(rc, d.Size)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if int64(len(b)) != d.Size {
		return nil, fmt.Errorf("blob %s: %d bytes, its descriptor says %d", d.Digest, len(b), d.Size)
	}
	if got := sha256Of(b); got != d.Digest {
		return nil, fmt.Errorf("blob %s: its bytes hash to %s", d.Digest, got)
	}
	return b, nil
}

// referrers returns the descriptors of the manifests whose subject is
// the manifest digest and whose artifact type is artifactType: from the
// referrers API (OCI 1.1), or from the referrers tag schema's index
// (sha256-<hex>) where a registry has no such API.
func (r *reader) referrers(ctx context.Context, digest v1.Hash, artifactType string) ([]v1.Descriptor, error) {
	resp, err := r.get(ctx, "/referrers/"+digest.String(), url.Values{"artifactType": {artifactType}}, string(types.OCIImageIndex))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b []byte
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	switch {
	case resp.StatusCode == http.StatusOK && strings.TrimSpace(ct) == string(types.OCIImageIndex):
		if b, err = readCapped(resp.Body, maxReferrersSize); err != nil {
			return nil, fmt.Errorf("referrers of %s: %w", digest, err)
		}
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusNotAcceptable || resp.StatusCode == http.StatusMethodNotAllowed:
		// No referrers API: the tag schema.
		var found bool
		b, _, found, err = r.manifest(ctx, digest.Algorithm+"-"+digest.Hex, maxReferrersSize, string(types.OCIImageIndex))
		if err != nil {
			return nil, fmt.Errorf("referrers of %s (tag schema): %w", digest, err)
		}
		if !found {
			return nil, nil
		}
	default:
		return nil, fmt.Errorf("referrers of %s: %w", digest, checkStatus(resp))
	}
	var idx v1.IndexManifest
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&idx); err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", digest, err)
	}
	// The artifact type a registry gives is a hint (some give the
	// config's media type instead); the manifest itself is checked.
	var out []v1.Descriptor
	for _, d := range idx.Manifests {
		if d.MediaType == types.OCIManifestSchema1 && (d.ArtifactType == artifactType || d.ArtifactType == "" || d.ArtifactType == archive.EmptyMediaType) {
			out = append(out, d)
		}
	}
	return out, nil
}

// checkStatus returns the registry's error when resp is not a 200,
// saying its HTTP status.
func checkStatus(resp *http.Response) error {
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return fmt.Errorf("%s: %w", resp.Status, err)
	}
	return nil
}

func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("more than %d bytes", max)
	}
	return b, nil
}

func sha256Of(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
