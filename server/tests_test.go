package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/trust"
)

// testRun signs a run of the test "age-test" of ent, at the clock's time.
func (e *env) testRun(ent *archive.Entry, passed bool, who string) []byte {
	e.t.Helper()
	r := &trust.TestRun{
		Test:       trust.TestSubject{Path: "/heph/store/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-age-test", Derivation: strings.Repeat("01", 32)},
		Tested:     []trust.TestSubject{{Path: ent.Path.String(), ContentHash: ent.ContentHash.String(), Derivation: strings.Repeat("02", 32)}},
		Derivation: strings.Repeat("01", 32),
		Result:     trust.TestPassed,
		Passed:     []string{"filippo.io/age.TestA"},
		Runner:     "hephc@test",
		Time:       e.clock.Now(),
	}
	if !passed {
		r.Result, r.Passed, r.Failed = trust.TestFailed, nil, []string{"filippo.io/age.TestA"}
	}
	env, err := trust.SignTestResult(r, pathtest.Key(e.t, who))
	if err != nil {
		e.t.Fatal(err)
	}
	return env
}

// With no Config.Tests the server judges the test-result attestations it
// was given.
func TestAttestedTests(t *testing.T) {
	e := newEnv(t)
	e.srv.Close()
	e.cfg.Tests = nil
	e.open()
	age := e.add("age", "v1")
	quorum := [][]byte{e.sign(age, trust.Built, "alice"), e.sign(age, trust.Built, "bob"), e.sign(age, trust.Reproduced, "carol")}
	req := e.request("age", "1.0", age, quorum...)

	req.Tests = [][]byte{e.testRun(age, false, "alice")}
	if err := e.srv.Publish(ctx, "pub", req); err == nil || !strings.Contains(err.Error(), "test age-test failed") {
		t.Fatalf("failed test: %v", err)
	}
	// A later pass signed by no key of the policy is kept, not counted.
	failed := e.testRun(age, false, "alice")
	e.at(time.Hour)
	req.Tests = [][]byte{failed, e.testRun(age, true, "mallory")}
	if err := e.srv.Publish(ctx, "pub", req); err == nil || !strings.Contains(err.Error(), "test age-test failed") {
		t.Fatalf("a signed failure, then an unsigned pass: %v", err)
	}
	// A result changed after it was signed is refused.
	var passed, tampered map[string]any
	json.Unmarshal(e.testRun(age, true, "alice"), &passed)
	json.Unmarshal(failed, &tampered)
	tampered["payload"] = passed["payload"]
	b, _ := json.Marshal(tampered)
	req.Tests = [][]byte{b}
	if err := e.srv.Publish(ctx, "pub", req); err == nil || !strings.Contains(err.Error(), "does not verify: changed after it was signed") {
		t.Fatalf("a tampered test result: %v", err)
	}
	other := e.add("other", "x")
	req.Tests = [][]byte{e.testRun(other, true, "alice")}
	if err := e.srv.Publish(ctx, "pub", req); err == nil || !strings.Contains(err.Error(), "tests none of the package's paths") {
		t.Fatalf("a test of another path: %v", err)
	}
	// A signed pass and a later unsigned failure: published; the failure
	// is shown, not counted.
	req.Tests = [][]byte{e.testRun(age, true, "alice")}
	e.at(2 * time.Hour)
	req.Tests = append(req.Tests, e.testRun(age, false, "mallory"))
	if err := e.srv.Publish(ctx, "pub", req); err != nil {
		t.Fatal(err)
	}
	res, err := e.srv.cfg.Tests.Results(ctx, Package{Attr: "age", Version: "1.0", Paths: []string{age.Path.String()}})
	if err != nil || len(res) != 2 || !res[0].Passed || res[0].Unsigned || res[1].Passed || !res[1].Unsigned {
		t.Fatalf("results %+v %v: want the signed pass and the unsigned failure", res, err)
	}
	// A later run fails: the version waits.
	e.at(2 * day)
	if n, err := e.srv.AddTestResults(ctx, "pub", [][]byte{e.testRun(age, false, "bob")}); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	e.at(8 * day)
	wantExcuses(t, e.evaluate("age", "1.0"), "test age-test failed")
	// And a run after that passes.
	e.at(8*day + time.Hour)
	if _, err := e.srv.AddTestResults(ctx, "pub", [][]byte{e.testRun(age, true, "carol")}); err != nil {
		t.Fatal(err)
	}
	if got := e.channel(channel.Stable); len(got) != 1 {
		t.Fatalf("stable %v", got)
	}
	h, _ := e.srv.History(ctx)
	if len(h) != 1 || h[0].Reasons[2] != "1 of 1 tests passed" {
		t.Fatalf("history %+v", h)
	}
}

// With Config.UnsignedTests a result signed by no key of the policy
// counts: its failure refuses the publish.
func TestUnsignedTestsCountWhenAccepted(t *testing.T) {
	e := newEnv(t)
	e.srv.Close()
	e.cfg.Tests, e.cfg.UnsignedTests = nil, true
	e.open()
	age := e.add("age", "v1")
	req := e.request("age", "1.0", age, e.sign(age, trust.Built, "alice"))
	req.Tests = [][]byte{e.testRun(age, true, "alice")}
	e.at(time.Hour)
	req.Tests = append(req.Tests, e.testRun(age, false, "mallory"))
	if err := e.srv.Publish(ctx, "pub", req); err == nil || !strings.Contains(err.Error(), "test age-test failed") {
		t.Fatalf("an unsigned failure, counted: %v", err)
	}
}
