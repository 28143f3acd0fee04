package trust

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func testRun() *TestRun {
	return &TestRun{
		Test:       TestSubject{Path: "/heph/store/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-age-test", ContentHash: "blake3:" + strings.Repeat("ab", 32), Derivation: strings.Repeat("01", 32)},
		Tested:     []TestSubject{{Path: "/heph/store/0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-age", Derivation: strings.Repeat("02", 32)}},
		Derivation: strings.Repeat("01", 32),
		Result:     TestPassed,
		Passed:     []string{"filippo.io/age.TestB", "filippo.io/age.TestA"},
		Runner:     "hephc@test",
		Time:       time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC),
	}
}

// A test result is an in-toto statement with the test-result predicate,
// valid by the reference implementation, and reads back as written.
func TestTestResultRoundTrip(t *testing.T) {
	r := testRun()
	b, err := MarshalTestStatement(r)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st["predicateType"] != TestResultType || st["_type"] != StatementType {
		t.Fatalf("statement %s", b)
	}
	pred := st["predicate"].(map[string]any)
	if pred["result"] != "PASSED" || len(pred["passedTests"].([]any)) != 2 {
		t.Fatalf("predicate %v", pred)
	}
	b2, _ := MarshalTestStatement(r)
	if string(b) != string(b2) {
		t.Fatalf("not deterministic:\n%s\n%s", b, b2)
	}
	got, err := ParseTestStatement(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Result != TestPassed || got.Test != r.Test || len(got.Tested) != 1 || got.Tested[0] != r.Tested[0] ||
		got.Runner != r.Runner || !got.Time.Equal(r.Time) || got.Passed[0] != "filippo.io/age.TestA" || got.Derivation != r.Derivation {
		t.Fatalf("read back %+v", got)
	}
}

// Signed with a key, the envelope verifies under it; without, it names no
// key; a bad result is refused.
func TestTestResultSigned(t *testing.T) {
	k := testKey(t, "alice")
	env, err := SignTestResult(testRun(), k)
	if err != nil {
		t.Fatal(err)
	}
	if !IsTestResult(env) {
		t.Fatal("IsTestResult: false")
	}
	r, ids, err := ReadTestResult(env)
	if err != nil || len(ids) != 1 || ids[0] != k.Public().ID() || r.Result != TestPassed {
		t.Fatalf("ReadTestResult: %v %v %v", r, ids, err)
	}
	keys := Keys{}
	keys.Add(k.Public())
	valid, err := VerifyTestResult(env, keys)
	if err != nil || len(valid) != 1 {
		t.Fatalf("VerifyTestResult: %v %v", valid, err)
	}
	unsigned, err := SignTestResult(testRun(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ids, err := ReadTestResult(unsigned); err != nil || len(ids) != 0 {
		t.Fatalf("unsigned: %v %v", ids, err)
	}
	bad := testRun()
	bad.Result = "MAYBE"
	if _, err := MarshalTestStatement(bad); err == nil {
		t.Fatal("result MAYBE accepted")
	}
}
