package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/trust"
)

var ctx = context.Background()

func TestPromotionRefusedOnDay6(t *testing.T) {
	e := newEnv(t)
	age := e.add("age", "v1")
	e.tests.set("age 1.0", TestResult{Name: "go-test-age", Passed: true})
	if err := e.publish("age", "1.0", age); err != nil {
		t.Fatal(err)
	}
	e.at(6*day + 23*60*60*1e9)
	wantExcuses(t, e.evaluate("age", "1.0"), "in testing 6 days of 7")
	if got := e.channel(channel.Testing); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("testing %v", got)
	}
	if _, err := e.srv.Promote(ctx, "maint", "age", "1.0", "urgent"); err == nil || !strings.Contains(err.Error(), "in testing 6 days of 7") {
		t.Fatalf("promoted by hand on day 6: %v", err)
	}
	// The excuses are what channels shows.
	cs, err := e.srv.Channels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w := cs[2].Waiting; cs[2].Name != channel.Testing || len(w) != 1 || w[0].Excuses[0] != "in testing 6 days of 7" {
		t.Fatalf("channels %+v", cs[2])
	}
}

func TestPromotionRefusedOnDay8WithOpenIssue(t *testing.T) {
	e := newEnv(t)
	age := e.add("age", "v1")
	if err := e.publish("age", "1.0", age); err != nil {
		t.Fatal(err)
	}
	e.at(2 * day)
	id, err := e.srv.OpenIssue(ctx, "rep", "age", "1.0", "age-keygen crashes on empty input")
	if err != nil {
		t.Fatal(err)
	}
	e.at(8 * day)
	wantExcuses(t, e.evaluate("age", "1.0"), "issue #1 open: age-keygen crashes on empty input")
	if err := e.srv.CloseIssue(ctx, "someone-else", false, id, "fixed"); err == nil || !strings.Contains(err.Error(), "needs the maintainer") {
		t.Fatalf("closed by someone else: %v", err)
	}
	if err := e.srv.CloseIssue(ctx, "rep", false, id, "not a bug"); err != nil {
		t.Fatal(err)
	}
	// Closing the issue is an event: the rules were evaluated again.
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("stable %v after the issue closed", got)
	}
	st, err := e.srv.IssueStats(ctx)
	if err != nil || st.Open != 0 || st.Closed != 1 || len(st.ClosedPerDay) != 1 || st.ClosedPerDay[0].Day != "2026-03-10" {
		t.Fatalf("stats %+v %v", st, err)
	}
}

func TestPromotionRefusedWithFailedTest(t *testing.T) {
	e := newEnv(t)
	age := e.add("age", "v1")
	e.tests.set("age 1.0", TestResult{Name: "go-test-age", Passed: true})
	if err := e.publish("age", "1.0", age); err != nil {
		t.Fatal(err)
	}
	e.tests.set("age 1.0", TestResult{Name: "go-test-age", Passed: false}, TestResult{Name: "selftest", Passed: true})
	e.at(8 * day)
	wantExcuses(t, e.evaluate("age", "1.0"), "test go-test-age failed")
}

func TestPromotionRefusedWithoutQuorum(t *testing.T) {
	e := newEnv(t)
	age := e.add("age", "v1")
	// Built by alice only: enough to publish, not for stable.
	if err := e.publish("age", "1.0", age, e.sign(age, trust.Built, "alice")); err != nil {
		t.Fatal(err)
	}
	e.at(8 * day)
	wantExcuses(t, e.evaluate("age", "1.0"), "quorum: "+age.Path.String()+": 1 of 2 signatures")
	// Bob rebuilds it and gets the same bytes: 2 people, 1 reproduction.
	if n, err := e.srv.AddAttestations(ctx, "pub", age.Path.String(), [][]byte{e.sign(age, trust.Reproduced, "bob")}); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("stable %v once the quorum held", got)
	}
	// Attestations of other bytes are not kept.
	other := e.add("other", "x")
	if _, err := e.srv.AddAttestations(ctx, "pub", age.Path.String(), [][]byte{e.sign(other, trust.Built, "dave")}); err == nil {
		t.Fatal("kept an attestation of other bytes")
	}
}

// The one k: stable needs k people who built it and k who reproduced
// it; k builders with k−1 reproducers wait.
func TestPromotionNeedsKBuiltAndKReproduced(t *testing.T) {
	e := newEnv(t)
	e.srv.Close()
	e.cfg.Promotion.Stable = []*trust.Policy{policy(t, trust.Rule{Builds: 2, Reproductions: 2})}
	e.open()
	age := e.add("age", "v1")
	if err := e.publish("age", "1.0", age, e.sign(age, trust.Built, "alice"), e.sign(age, trust.Built, "bob"), e.sign(age, trust.Reproduced, "carol")); err != nil {
		t.Fatal(err)
	}
	e.at(8 * day)
	wantExcuses(t, e.evaluate("age", "1.0"), "quorum: "+age.Path.String()+": 1 of 2 reproductions: carol reproduced it; missing any 1 of alice, bob, dave")
	if n, err := e.srv.AddAttestations(ctx, "pub", age.Path.String(), [][]byte{e.sign(age, trust.Reproduced, "dave")}); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("stable %v with 2 builders and 2 reproducers", got)
	}
}

func TestPromotionGrantedOnDay8(t *testing.T) {
	e := newEnv(t)
	v := channel.NewVerifier(e.rootHash, e.clock.Now)
	age := e.add("age", "v1")
	e.tests.set("age 1.0", TestResult{Name: "go-test-age", Passed: true})
	if err := e.publish("age", "1.0", age); err != nil {
		t.Fatal(err)
	}
	before := e.verify(v)
	e.at(8 * day)
	if err := e.srv.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("stable %v", got)
	}
	if got := e.channel(channel.Testing); len(got) != 0 {
		t.Fatalf("testing %v", got)
	}
	after := e.verify(v)
	if after.Versions[channel.Stable] <= before.Versions[channel.Stable] || after.Versions[channel.Testing] <= before.Versions[channel.Testing] {
		t.Fatalf("versions %v then %v", before.Versions, after.Versions)
	}
	if _, err := after.Admit(channel.Stable, age.Path.String(), age.Manifest.Digest.String()); err != nil {
		t.Fatal(err)
	}
	h, err := e.srv.History(ctx)
	if err != nil || len(h) != 1 {
		t.Fatal(h, err)
	}
	want := []string{"in testing 8 days of 7", "no open issue", "1 of 1 tests passed", "the quorum for stable holds"}
	if h[0].From != "testing" || h[0].To != "stable" || h[0].Who != "server" || !slices.Equal(h[0].Reasons, want) {
		t.Fatalf("history %+v", h[0])
	}
}

func TestDeprecatedOnReplacement(t *testing.T) {
	e := newEnv(t)
	v := channel.NewVerifier(e.rootHash, e.clock.Now)
	a1, a2 := e.add("age", "v1"), e.add("age", "v2")
	if err := e.publish("age", "1.0", a1); err != nil {
		t.Fatal(err)
	}
	e.at(8 * day)
	if err := e.publish("age", "1.1", a2); err != nil {
		t.Fatal(err)
	}
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("stable %v", got)
	}
	e.at(16 * day)
	if err := e.srv.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.1"}) {
		t.Fatalf("stable %v", got)
	}
	if got := e.channel(channel.Deprecated); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("deprecated %v", got)
	}
	// Still installable, from deprecated.
	vd := e.verify(v)
	if _, err := vd.Admit(channel.Deprecated, a1.Path.String(), a1.Manifest.Digest.String()); err != nil {
		t.Fatal(err)
	}
	// Never promoted again, nor published again.
	if _, err := e.srv.Promote(ctx, "maint", "age", "1.0", ""); err == nil || !strings.Contains(err.Error(), "not in testing") {
		t.Fatalf("promoted a deprecated version: %v", err)
	}
	if err := e.publish("age", "1.0", a1); err == nil || !strings.Contains(err.Error(), "published before") {
		t.Fatalf("republished: %v", err)
	}
	h, _ := e.srv.History(ctx)
	if len(h) != 3 || h[2].Version != "1.0" || h[2].To != "deprecated" || h[2].Reasons[0] != "replaced by 1.1" {
		t.Fatalf("history %+v", h)
	}
}

func TestChannelRollback(t *testing.T) {
	e := newEnv(t)
	v := channel.NewVerifier(e.rootHash, e.clock.Now)
	a1, a2 := e.add("age", "v1"), e.add("age", "v2")
	e.publish("age", "1.0", a1)
	e.at(8 * day)
	e.publish("age", "1.1", a2)
	e.at(16 * day)
	e.srv.Tick(ctx)
	before := e.verify(v)
	ver, err := e.srv.Rollback(ctx, "maint", channel.Stable, "1.1 breaks decryption")
	if err != nil {
		t.Fatal(err)
	}
	after := e.verify(v) // a higher version: the client accepts it
	if ver != after.Versions[channel.Stable] || ver <= before.Versions[channel.Stable] {
		t.Fatalf("rollback to version %d; before %v after %v", ver, before.Versions, after.Versions)
	}
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("stable %v after rollback", got)
	}
	if got := e.channel(channel.Deprecated); len(got) != 0 {
		t.Fatalf("deprecated %v after rollback", got)
	}
	if _, err := after.Admit(channel.Stable, a1.Path.String(), a1.Manifest.Digest.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := after.Admit(channel.Stable, a2.Path.String(), a2.Manifest.Digest.String()); err == nil {
		t.Fatal("1.1 still in stable")
	}
	// Rolling testing back brings 1.1 back there, but never to stable.
	if _, err := e.srv.Rollback(ctx, "maint", channel.Testing, ""); err != nil {
		t.Fatal(err)
	}
	if got := e.channel(channel.Testing); !slices.Equal(got, []string{"age 1.1"}) {
		t.Fatalf("testing %v after its rollback", got)
	}
	e.at(30 * day)
	wantExcuses(t, e.evaluate("age", "1.1"), "promoted to stable before: never promoted again")
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0"}) {
		t.Fatalf("stable %v", got)
	}
	if err := e.srv.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.verify(v)
	if _, err := e.srv.Rollback(ctx, "maint", "unstable", ""); err == nil || !strings.Contains(err.Error(), `"unstable" is not a channel`) {
		t.Fatal(err)
	}
	e2 := newEnv(t)
	if _, err := e2.srv.Rollback(ctx, "maint", channel.Stable, ""); err == nil || !strings.Contains(err.Error(), "no other content") {
		t.Fatal(err)
	}
}

func TestTwoPromotionsAtOnce(t *testing.T) {
	e := newEnv(t)
	age, gopls := e.add("age", "v1"), e.add("gopls", "v1")
	e.publish("age", "1.0", age)
	e.publish("gopls", "0.9", gopls)
	e.at(8 * day)
	v0, _, _ := content(ctx, e.srv.db, channel.Stable)
	// A second server on the same data directory, as a second process
	// would be: only SQLite's write lock serializes the two.
	second, err := Open(e.dir, e.cfg, e.clock)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	servers := []*Server{e.srv, second}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, p := range []string{"age", "age", "gopls", "gopls"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ver := map[string]string{"age": "1.0", "gopls": "0.9"}[p]
			_, errs[i] = servers[i%2].Promote(ctx, "maint", p, ver, "")
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var re *RefusedError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &re) && strings.Contains(err.Error(), "not in testing"):
		default:
			t.Fatal(err)
		}
	}
	if ok != 2 {
		t.Fatalf("%d promotions succeeded: %v", ok, errs)
	}
	v1, _, _ := content(ctx, e.srv.db, channel.Stable)
	if v1 != v0+2 {
		t.Fatalf("stable went from version %d to %d, want two new versions", v0, v1)
	}
	if got := e.channel(channel.Stable); !slices.Equal(got, []string{"age 1.0", "gopls 0.9"}) {
		t.Fatalf("stable %v", got)
	}
	e.verify(channel.NewVerifier(e.rootHash, e.clock.Now))
}
