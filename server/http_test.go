package server

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	ggcr "github.com/google/go-containerregistry/pkg/registry"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

func (e *env) serve() *httptest.Server {
	ts := httptest.NewServer(e.srv.Handler())
	e.t.Cleanup(ts.Close)
	return ts
}

func (e *env) token(name string, role Role) string {
	e.t.Helper()
	tok, err := e.srv.CreateToken(ctx, "admin", name, role)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func status(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func TestWrongRoleIs403AndLogged(t *testing.T) {
	e := newEnv(t)
	ts := e.serve()
	age := e.add("age", "v1")
	reader := &Client{Base: ts.URL, Token: e.token("rita", Reporter)}
	anon := &Client{Base: ts.URL}
	forged := &Client{Base: ts.URL, Token: "heph_notatoken"}
	req := e.request("age", "1.0", age, e.sign(age, trust.Built, "alice"))
	for name, c := range map[string]*Client{"reporter": reader, "anonymous": anon, "unknown token": forged} {
		if err := c.Publish(ctx, req); status(err) != http.StatusForbidden || !strings.Contains(err.Error(), "needs the publisher role") {
			t.Fatalf("%s publish: %v", name, err)
		}
	}
	if _, err := reader.Promote(ctx, "age", "1.0", ""); status(err) != http.StatusForbidden {
		t.Fatalf("reporter promote: %v", err)
	}
	if _, err := reader.Rollback(ctx, "stable", ""); status(err) != http.StatusForbidden {
		t.Fatalf("reporter rollback: %v", err)
	}
	log, err := e.srv.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var forbidden []string
	for _, a := range log {
		if a.Outcome == "forbidden" {
			forbidden = append(forbidden, a.Who+" "+a.Action)
		}
	}
	if len(forbidden) != 5 || !slices.Contains(forbidden, "rita promote") || !strings.HasPrefix(forbidden[1], "anonymous from 127.0.0.1:") && !strings.HasPrefix(forbidden[0], "anonymous from 127.0.0.1:") {
		t.Fatalf("audit log: %q", forbidden)
	}
	if got := e.channel(channel.Testing); len(got) != 0 {
		t.Fatalf("testing %v", got)
	}
	// Reads are open unless the configuration makes them private.
	if _, err := anon.Channels(ctx); err != nil {
		t.Fatal(err)
	}
	e.srv.cfg.PrivateReads = true
	ts2 := httptest.NewServer(e.srv.Handler())
	defer ts2.Close()
	if _, err := (&Client{Base: ts2.URL}).Channels(ctx); status(err) != http.StatusForbidden {
		t.Fatalf("private read: %v", err)
	}
	if _, err := (&Client{Base: ts2.URL, Token: e.token("reed", Reader)}).Channels(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Client{Base: ts2.URL}).Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
}

func TestAPI(t *testing.T) {
	e := newEnv(t)
	ts := e.serve()
	pub := &Client{Base: ts.URL, Token: e.token("pia", Publisher)}
	rep := &Client{Base: ts.URL, Token: e.token("rita", Reporter)}
	maint := &Client{Base: ts.URL, Token: e.token("max", Maintainer)}
	v := channel.NewVerifier(e.rootHash, e.clock.Now)

	a1, a2 := e.add("age", "v1"), e.add("age", "v2")
	if err := pub.Publish(ctx, e.request("age", "1.0", a1, e.sign(a1, trust.Built, "alice"))); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, e.request("age", "1.0", a1)); status(err) != http.StatusConflict {
		t.Fatalf("publish again: %v", err)
	}
	if n, err := pub.AddAttestations(ctx, a1.Path.String(), [][]byte{e.sign(a1, trust.Reproduced, "bob")}); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	id, err := rep.OpenIssue(ctx, "age", "1.0", "crashes on empty input")
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.CommentIssue(ctx, id, "with -d too"); err != nil {
		t.Fatal(err)
	}
	e.at(8 * day)
	if _, err := maint.Promote(ctx, "age", "1.0", "needed"); status(err) != http.StatusConflict || !strings.Contains(err.Error(), "issue #1 open") {
		t.Fatalf("promote with an open issue: %v", err)
	}
	e.srv.Tick(ctx) // the timer
	cs, err := rep.Channels(ctx)
	if err != nil || cs[2].Name != "testing" || len(cs[2].Waiting) != 1 || cs[2].Waiting[0].Excuses[0] != "issue #1 open: crashes on empty input" {
		t.Fatalf("channels %+v %v", cs, err)
	}
	if err := maint.CloseIssue(ctx, id, "fixed upstream"); err != nil {
		t.Fatal(err)
	}
	is, err := rep.Issues(ctx, "age", false)
	if err != nil || len(is) != 1 || is[0].ClosedBy != "max" || len(is[0].Comments) != 2 {
		t.Fatalf("issues %+v %v", is, err)
	}
	vd, err := (&Client{Base: ts.URL}).Verified(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vd.Admit(channel.Stable, a1.Path.String(), a1.Manifest.Digest.String()); err != nil {
		t.Fatalf("closing the issue did not promote: %v", err)
	}
	if err := pub.Publish(ctx, e.request("age", "1.1", a2, e.sign(a2, trust.Built, "alice"), e.sign(a2, trust.Built, "bob"), e.sign(a2, trust.Reproduced, "carol"))); err != nil {
		t.Fatal(err)
	}
	e.at(16 * day)
	if _, err := maint.Promote(ctx, "age", "1.1", ""); err != nil {
		t.Fatal(err)
	}
	ver, err := maint.Rollback(ctx, "stable", "1.1 breaks decryption")
	if err != nil {
		t.Fatal(err)
	}
	vd, err = (&Client{Base: ts.URL}).Verified(ctx, v)
	if err != nil || vd.Versions["stable"] != ver {
		t.Fatal(err, vd.Versions, ver)
	}
	h, err := rep.History(ctx)
	if err != nil || len(h) != 4 || h[3].From != "stable" || h[3].Who != "max" {
		t.Fatalf("history %+v %v", h, err)
	}
	st, err := rep.IssueStats(ctx)
	if err != nil || st.Closed != 1 {
		t.Fatal(st, err)
	}
	if _, err := rep.Audit(ctx); status(err) != http.StatusForbidden {
		t.Fatalf("reporter reads the audit log: %v", err)
	}
	if a, err := maint.Audit(ctx); err != nil || len(a) == 0 || a[0].Action != "token create" {
		t.Fatalf("audit %v %v", a, err)
	}
	if h, err := e.srv.RootHash(ctx); err != nil || h != e.rootHash {
		t.Fatal(h, err)
	}
	health, err := rep.Health(ctx)
	if err != nil || !health.OK || health.Versions["stable"] != ver {
		t.Fatal(health, err)
	}
	// The documents one by one, as a TUF client fetches them.
	resp, err := http.Get(ts.URL + "/tuf/root.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if channel.RootHash(b) != e.rootHash {
		t.Fatal("/tuf/root.json is not the pinned root")
	}
	if resp, _ := http.Get(ts.URL + "/tuf/nothing.json"); resp.StatusCode != http.StatusNotFound {
		t.Fatal(resp.Status)
	}
}

// A publish against a real registry: the paths pushed by registry/, read
// back by digest through RemoteRegistry.
func TestPublishFromRegistry(t *testing.T) {
	e := newEnv(t)
	reg := httptest.NewServer(ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	ref, err := registry.ParseRef("oci://" + host + "/pkgs")
	if err != nil {
		t.Fatal(err)
	}
	age := e.add("age", "v1")
	res, err := (&registry.Client{}).Push(ctx, e.store, []store.Path{age.Path}, ref, registry.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pushed[0].Manifest.Digest != age.Manifest.Digest {
		t.Fatalf("pushed %s, exported %s", res.Pushed[0].Manifest.Digest, age.Manifest.Digest)
	}
	rr, err := NewRemoteRegistry(host + "/pkgs")
	if err != nil {
		t.Fatal(err)
	}
	e.srv.cfg.Registry = rr
	if err := e.publish("age", "1.0", age); err != nil {
		t.Fatal(err)
	}
	if got := e.channel(channel.Testing); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("testing %v", got)
	}
	other := e.add("other", "x")
	if err := e.publish("other", "1", other); err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") && !strings.Contains(err.Error(), "404") {
		t.Fatalf("a path not in the registry: %v", err)
	}
}
