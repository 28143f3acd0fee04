package trust

import (
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	p := testPolicy(t, Rule{Signatures: 2})
	s := testSubject("age")
	alice := sign(t, Built, s, testKey(t, "alice"))
	alice2 := sign(t, Built, s, testKey(t, "alice2"))
	other := sign(t, Built, testSubject("other bytes"), testKey(t, "bob"))
	mallory := sign(t, Built, s, testKey(t, "mallory"))
	garbage := []byte(`{"payloadType": "x"}`)
	c := Candidate{Subject: s}

	j := Judge([]*Policy{p}, c, [][]byte{alice, alice2, other, mallory, garbage}, testNow)
	if j.Admitted() {
		t.Fatal("admitted on one person's two keys")
	}
	if len(j.Counted) != 2 {
		t.Errorf("counted %d envelopes, want alice's two", len(j.Counted))
	}
	vs := j.Violations()
	if len(vs) != 1 {
		t.Fatalf("got violations %v, want one", vs)
	}
	msg := vs[0].Error()
	for _, want := range []string{"1 of 2 signatures: alice", "missing any 1 of bob, carol", "for other bytes", "a key the policy does not know", "envelope sha256:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("violation %q does not say %q", msg, want)
		}
	}

	bob := sign(t, Reproduced, s, testKey(t, "bob"))
	j = Judge([]*Policy{p}, c, [][]byte{garbage, alice, bob}, testNow)
	if !j.Admitted() || len(j.Counted) != 2 || len(j.Notes) != 1 {
		t.Fatalf("alice and bob: admitted %v, counted %d, notes %v; want admitted, 2, the garbage noted", j.Admitted(), len(j.Counted), j.Notes)
	}

	// Each policy holds on its own: a second, stricter one refuses.
	strict := testPolicy(t, Rule{Signatures: 3})
	if Judge([]*Policy{p, strict}, c, [][]byte{alice, bob}, testNow).Admitted() {
		t.Fatal("admitted although the stricter policy does not hold")
	}
	if !Judge([]*Policy{p}, Candidate{Subject: s, Pinned: true}, nil, testNow).Admitted() {
		t.Fatal("a pinned path not admitted on its pin")
	}
}
