package server

import (
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// TestLoad is a bounded load test on loopback (issue 19): 20 clients
// read the channels (the signed metadata, verified as realize --server
// does, and the JSON) and fetch the blobs stable holds from the registry,
// all at once, while a publish (two paths) and a promotion by hand run.
// No request may fail, and no client may see a half-published or
// half-promoted channel: the two paths of the publish both or neither,
// the promoted version in testing or in stable, never both or neither,
// no channel's version lower than one it saw. It reports requests/s and
// the p99 latency.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test")
	}
	const clients = 20
	const runFor = 6 * time.Second
	e := newEnv(t)
	regSrv := httptest.NewServer(ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
	defer regSrv.Close()
	host := strings.TrimPrefix(regSrv.URL, "http://")
	ref, err := registry.ParseRef("oci://" + host + "/heph")
	if err != nil {
		t.Fatal(err)
	}
	rr, err := NewRemoteRegistry(host + "/heph")
	if err != nil {
		t.Fatal(err)
	}
	e.srv.cfg.Registry = rr
	push := func(names ...string) []*archive.Entry {
		var ents []*archive.Entry
		var ps []store.Path
		for _, n := range names {
			ent := e.add(n, n+"-content")
			ents = append(ents, ent)
			ps = append(ps, ent.Path)
		}
		if _, err := (&registry.Client{}).Push(ctx, e.store, ps, ref, registry.PushOptions{}); err != nil {
			t.Fatal(err)
		}
		return ents
	}
	// base in stable (day 0, promoted on day 8), age in testing since
	// day 2: promotable by hand on day 9.
	base := push("base")[0]
	if err := e.publish("base", "1", base); err != nil {
		t.Fatal(err)
	}
	e.at(2 * day)
	age := push("age")[0]
	if err := e.publish("age", "1.0", age); err != nil {
		t.Fatal(err)
	}
	e.at(8 * day)
	if d := e.evaluate("base", "1"); !d.Promoted {
		t.Fatalf("base not promoted: %v", d.Excuses)
	}
	wg2 := push("wg-a", "wg-b")
	e.at(9*day + 60*60*1e9)
	ts := e.serve()
	maint := &Client{Base: ts.URL, Token: e.token("max", Maintainer)}
	pub := &Client{Base: ts.URL, Token: e.token("pia", Publisher)}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * clients}, Timeout: 30 * time.Second}
	verifyAt := day0.Add(8*day + 60*60*1e9) // after the last signing, before its timestamp expires

	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  []string
		seenBoth  atomic.Bool // a client saw age promoted
		seenWG    atomic.Bool // a client saw the publish
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	timed := func(f func() error) error {
		t0 := time.Now()
		err := f()
		d := time.Since(t0)
		mu.Lock()
		latencies = append(latencies, d)
		mu.Unlock()
		return err
	}
	agePath, wgA, wgB := age.Path.String(), wg2[0].Path.String(), wg2[1].Path.String()
	// check is what every view of the channels must hold.
	check := func(who string, chans map[string][]channel.Entry) {
		has := func(ch, p string) bool {
			return slices.ContainsFunc(chans[ch], func(e channel.Entry) bool { return e.Path == p })
		}
		inT, inS := has(channel.Testing, agePath), has(channel.Stable, agePath)
		if inT == inS {
			fail("%s: age 1.0 in testing %v and in stable %v: half promoted", who, inT, inS)
		}
		if inS {
			seenBoth.Store(true)
		}
		a, b := has(channel.Testing, wgA), has(channel.Testing, wgB)
		if a != b {
			fail("%s: one path of wireguard 2.0 in testing, not the other: half published", who)
		}
		if a {
			seenWG.Store(true)
		}
		if !has(channel.Stable, base.Path.String()) {
			fail("%s: base left stable", who)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &Client{Base: ts.URL, HTTP: hc}
			v := channel.NewVerifier(e.rootHash, func() time.Time { return verifyAt })
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var vd *channel.Verified
				if err := timed(func() (err error) { vd, err = c.Verified(ctx, v); return err }); err != nil {
					fail("client %d: metadata: %v", i, err)
					continue
				}
				check(fmt.Sprintf("client %d (signed metadata)", i), vd.Channels)
				var cs []ChannelView
				if err := timed(func() (err error) { cs, err = c.Channels(ctx); return err }); err != nil {
					fail("client %d: channels: %v", i, err)
					continue
				}
				m := map[string][]channel.Entry{}
				for _, cv := range cs {
					m[cv.Name] = cv.Entries
				}
				check(fmt.Sprintf("client %d (GET /api/v1/channels)", i), m)
				// The blobs of what stable holds: each manifest and its
				// layer, checked against their digests.
				for _, en := range vd.Channels[channel.Stable] {
					if err := timed(func() error { return fetchChecked(hc, regSrv.URL+"/v2/heph/manifests/"+en.Manifest, en.Manifest) }); err != nil {
						fail("client %d: %v", i, err)
					}
				}
			}
		}()
	}
	// Meanwhile: a publish of two paths, and a promotion by hand.
	start := time.Now()
	time.Sleep(runFor / 4)
	var events sync.WaitGroup
	events.Add(2)
	go func() {
		defer events.Done()
		req := PublishRequest{Attr: "wireguard", Version: "2.0"}
		for _, ent := range wg2 {
			req.Paths = append(req.Paths, PublishedPath{Path: ent.Path.String(), Manifest: ent.Manifest.Digest.String(),
				Envelopes: [][]byte{e.sign(ent, trust.Built, "alice"), e.sign(ent, trust.Built, "bob"), e.sign(ent, trust.Reproduced, "carol")}})
		}
		if err := timed(func() error { return pub.Publish(ctx, req) }); err != nil {
			fail("publish: %v", err)
		}
	}()
	go func() {
		defer events.Done()
		if err := timed(func() error { _, err := maint.Promote(ctx, "age", "1.0", "load test"); return err }); err != nil {
			fail("promote: %v", err)
		}
	}()
	events.Wait()
	time.Sleep(time.Until(start.Add(runFor)))
	close(stop)
	wg.Wait()
	took := time.Since(start)
	for _, f := range failures {
		t.Error(f)
	}
	if !seenBoth.Load() || !seenWG.Load() {
		t.Errorf("no client saw the promotion (%v) or the publish (%v) happen", seenBoth.Load(), seenWG.Load())
	}
	slices.Sort(latencies)
	n := len(latencies)
	if n == 0 {
		t.Fatal("no requests")
	}
	p := func(q float64) time.Duration { return latencies[min(n-1, int(float64(n)*q))] }
	t.Logf("%d clients, %d requests in %v: %.0f requests/s; latency p50 %v, p99 %v, max %v",
		clients, n, took.Round(time.Millisecond), float64(n)/took.Seconds(), p(0.5).Round(time.Microsecond), p(0.99).Round(time.Microsecond), latencies[n-1].Round(time.Microsecond))
}

// fetchChecked fetches u and checks its bytes hash to digest.
func fetchChecked(hc *http.Client, u, digest string) error {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != digest {
		return fmt.Errorf("GET %s: %s, want %s", u, got, digest)
	}
	return nil
}
