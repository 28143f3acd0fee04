package trust

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"hephc.dev/hephc/srcpos"
)

// testKey returns a key whose seed is derived from name.
func testKey(t testing.TB, name string) *SecretKey {
	t.Helper()
	seed := sha256.Sum256([]byte("test key " + name))
	k, err := KeyFromSeed(name, seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testSubject(content string) Subject {
	h := sha256.Sum256([]byte(content))
	l := sha256.Sum256([]byte("layer " + content))
	return Subject{
		Path:        "/heph/store/0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghijk-age",
		ContentHash: fmt.Sprintf("blake3:%x", h),
		LayerDigest: fmt.Sprintf("sha256:%x", l),
		References:  []string{"/heph/store/zyxwvsrqpnmlkjihgfdcba9876543210zyxwvsrqpnmlkjihgf-go"},
		Deriver:     "0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghijk",
	}
}

func sign(t testing.TB, kind Kind, s Subject, k *SecretKey) []byte {
	t.Helper()
	b, err := Sign(&Claim{Kind: kind, Subject: s, Builder: "hephc@" + k.Name, Time: testNow}, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// people: alice (two keys), bob, carol.
func testPolicy(t testing.TB, rules ...Rule) *Policy {
	p := &Policy{Source: "policy.cue", People: []Person{
		{Name: "alice", Keys: []Key{{Public: testKey(t, "alice").Public()}, {Public: testKey(t, "alice2").Public()}}},
		{Name: "bob", Keys: []Key{{Public: testKey(t, "bob").Public()}}},
		{Name: "carol", Keys: []Key{{Public: testKey(t, "carol").Public()}}},
	}, Rules: rules}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	return p
}

// attestations verifies envelopes against p's keys.
func attestations(t testing.TB, p *Policy, envs ...[]byte) []Attestation {
	t.Helper()
	var out []Attestation
	for _, e := range envs {
		v, err := VerifyEnvelope(e, p.Keys())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v.Attestations...)
	}
	return out
}

func TestPublicKeyRoundTripAndID(t *testing.T) {
	k := testKey(t, "alice").Public()
	s := k.String()
	if !strings.HasPrefix(s, "ssh-ed25519 AAAA") {
		t.Fatalf("got %q, want an OpenSSH ed25519 key", s)
	}
	p, err := ParsePublicKey(s + " alice@example")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != k.ID() || !strings.HasPrefix(string(k.ID()), "SHA256:") || len(k.ID()) != 50 {
		t.Fatalf("got id %s and %s, want the same SHA256:… fingerprint", p.ID(), k.ID())
	}
	if keygen, err := exec.LookPath("ssh-keygen"); err == nil {
		f := filepath.Join(t.TempDir(), "k.pub")
		os.WriteFile(f, []byte(s+" alice\n"), 0o644)
		out, err := exec.Command(keygen, "-l", "-f", f).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), string(k.ID())) {
			t.Fatalf("ssh-keygen -l says %q, want the key id %s", out, k.ID())
		}
	}
	for _, bad := range []string{"", "ssh-rsa AAAAB3NzaC1yc2E", "ssh-ed25519 !!!", s + "\n" + s} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q): no error", bad)
		}
	}
}

func TestSecretKeyFile(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, "alice")
	plain := filepath.Join(dir, "plain.key")
	if err := WriteSecretKeyFile(plain, k, nil, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(plain); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := ReadSecretKeyFile(plain, nil)
	if err != nil || got.Public().ID() != k.Public().ID() || got.Name != "alice" {
		t.Fatalf("read back %v, %v", got, err)
	}
	if err := WriteSecretKeyFile(plain, k, nil, nil); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	os.Chmod(plain, 0o640)
	if _, err := ReadSecretKeyFile(plain, nil); err == nil || !strings.Contains(err.Error(), "only its owner may") {
		t.Fatalf("group-readable key: got %v, want a refusal", err)
	}

	sealed := filepath.Join(dir, "sealed.key")
	if err := WriteSecretKeyFile(sealed, k, []byte("correct horse"), strings.NewReader(strings.Repeat("r", 64))); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(sealed)
	if strings.Contains(string(b), base64.StdEncoding.EncodeToString(k.key.Seed())) {
		t.Fatal("the sealed file holds the seed in the clear")
	}
	if _, err := ReadSecretKeyFile(sealed, nil); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("no passphrase: got %v", err)
	}
	pass := func(p string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(p), nil } }
	if _, err := ReadSecretKeyFile(sealed, pass("wrong")); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("wrong passphrase: got %v", err)
	}
	got, err = ReadSecretKeyFile(sealed, pass("correct horse"))
	if err != nil || got.Public().ID() != k.Public().ID() {
		t.Fatalf("right passphrase: %v", err)
	}
	// Renaming the key inside the file breaks the seal.
	renamed := strings.Replace(string(b), `"name": "alice"`, `"name": "mallory"`, 1)
	if _, err := ParseSecretKey([]byte(renamed), []byte("correct horse")); err == nil {
		t.Fatal("a renamed sealed key was accepted")
	}
	// A hostile cost is refused before any work.
	costly := strings.Replace(string(b), `"memoryKiB": 65536`, `"memoryKiB": 4294967295`, 1)
	if _, err := ParseSecretKey([]byte(costly), []byte("correct horse")); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("hostile argon2 cost: got %v", err)
	}
	// A public key that is not the secret key's is refused.
	var f map[string]any
	pb, _ := os.ReadFile(plain)
	json.Unmarshal(pb, &f)
	f["public"] = testKey(t, "bob").Public().String()
	swapped, _ := json.Marshal(f)
	if _, err := ParseSecretKey(swapped, nil); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("swapped public key: got %v", err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	p := testPolicy(t)
	s := testSubject("a")
	for _, kind := range []Kind{Built, Reproduced} {
		env := sign(t, kind, s, testKey(t, "bob"))
		if again := sign(t, kind, s, testKey(t, "bob")); string(again) != string(env) {
			t.Fatal("signing the same claim twice gave different envelopes")
		}
		v, err := VerifyEnvelope(env, p.Keys())
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Attestations) != 1 || len(v.Problems) != 0 {
			t.Fatalf("got %d attestations, problems %v; want 1, none", len(v.Attestations), v.Problems)
		}
		a := v.Attestations[0]
		if a.Kind != kind || !a.Subject.Equal(s) || a.Key != testKey(t, "bob").Public().ID() || !a.Time.Equal(testNow) || a.Builder != "hephc@bob" {
			t.Fatalf("got %+v", a)
		}
	}
}

// The envelope verifies with the DSSE reference library too.
func TestEnvelopeVerifiesWithDSSE(t *testing.T) {
	k := testKey(t, "bob")
	var env dsse.Envelope
	if err := json.Unmarshal(sign(t, Built, testSubject("a"), k), &env); err != nil {
		t.Fatal(err)
	}
	ev, err := dsse.NewEnvelopeVerifier(dsseVerifier{k.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Verify(t.Context(), &env); err != nil {
		t.Fatalf("dsse: %v", err)
	}
}

func TestTamperedEnvelope(t *testing.T) {
	p := testPolicy(t, Rule{Signatures: 1})
	env := sign(t, Built, testSubject("a"), testKey(t, "bob"))
	var e dsse.Envelope
	json.Unmarshal(env, &e)
	payload, _ := base64.StdEncoding.DecodeString(e.Payload)
	other := testSubject("b")
	payload = []byte(strings.Replace(string(payload), strings.TrimPrefix(testSubject("a").ContentHash, "blake3:"), strings.TrimPrefix(other.ContentHash, "blake3:"), 1))
	e.Payload = base64.StdEncoding.EncodeToString(payload)
	tampered, _ := json.Marshal(&e)
	v, err := VerifyEnvelope(tampered, p.Keys())
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Attestations) != 0 || len(v.Problems) != 1 || !strings.Contains(v.Problems[0].Reason, "bad signature") {
		t.Fatalf("tampered: got %d attestations, problems %v; want none and a bad signature", len(v.Attestations), v.Problems)
	}
	d := p.Evaluate(Candidate{Subject: other}, v.Attestations, testNow)
	if d.Admitted() {
		t.Fatal("a tampered envelope admitted its path")
	}
}

func TestMalformedEnvelopes(t *testing.T) {
	p := testPolicy(t)
	good := sign(t, Built, testSubject("a"), testKey(t, "bob"))
	var e dsse.Envelope
	json.Unmarshal(good, &e)
	mk := func(f func(*dsse.Envelope)) []byte {
		c := e
		c.Signatures = append([]dsse.Signature(nil), e.Signatures...)
		f(&c)
		b, _ := json.Marshal(&c)
		return b
	}
	for name, b := range map[string][]byte{
		"not json":      []byte("{"),
		"unknown field": []byte(strings.Replace(string(good), `{"payloadType"`, `{"extra":1,"payloadType"`, 1)),
		"payload type":  mk(func(c *dsse.Envelope) { c.PayloadType = "text/plain" }),
		"no signatures": mk(func(c *dsse.Envelope) { c.Signatures = nil }),
		"too many signatures": mk(func(c *dsse.Envelope) {
			for range MaxSignatures {
				c.Signatures = append(c.Signatures, c.Signatures[0])
			}
		}),
		"url base64":     mk(func(c *dsse.Envelope) { c.Payload = strings.NewReplacer("+", "-", "/", "_").Replace(c.Payload) + "!" }),
		"trailing value": append(append([]byte(nil), good...), []byte(" {}")...),
		"huge":           make([]byte, MaxEnvelopeSize+1),
	} {
		if _, err := VerifyEnvelope(b, p.Keys()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestUnknownKey(t *testing.T) {
	p := testPolicy(t, Rule{Signatures: 1})
	v, err := VerifyEnvelope(sign(t, Built, testSubject("a"), testKey(t, "mallory")), p.Keys())
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Attestations) != 0 || len(v.Problems) != 1 || !strings.Contains(v.Problems[0].Reason, "does not know") {
		t.Fatalf("got %v, %v", v.Attestations, v.Problems)
	}
	if d := p.Evaluate(Candidate{Subject: testSubject("a")}, v.Attestations, testNow); d.Admitted() {
		t.Fatal("admitted on an unknown key")
	}
}

func TestStatementForAnotherHash(t *testing.T) {
	p := testPolicy(t, Rule{Signatures: 1})
	atts := attestations(t, p, sign(t, Built, testSubject("other bytes"), testKey(t, "bob")))
	d := p.Evaluate(Candidate{Subject: testSubject("a")}, atts, testNow)
	if d.Admitted() || len(d.Ignored) != 1 || !strings.Contains(d.Ignored[0], "content hash") {
		t.Fatalf("got admitted=%v, ignored %q", d.Admitted(), d.Ignored)
	}
	// Any field of the subject counts: references too.
	s := testSubject("a")
	s.References = nil
	atts = attestations(t, p, sign(t, Built, s, testKey(t, "bob")))
	if d := p.Evaluate(Candidate{Subject: testSubject("a")}, atts, testNow); d.Admitted() {
		t.Fatal("admitted on a statement with other references")
	}
}

func TestQuorumCountsPeople(t *testing.T) {
	rule := Rule{Signatures: 2, Pos: srcpos.Pos{File: "policy.cue", Line: 7, Col: 3}}
	p := testPolicy(t, rule)
	s := testSubject("a")
	cases := []struct {
		name    string
		signers []string
		ok      bool
		want    string
	}{
		{"two people", []string{"alice", "bob"}, true, ""},
		{"k-1", []string{"bob"}, false, "1 of 2 signatures: bob built or reproduced it; missing any 1 of alice, carol"},
		{"none", nil, false, "0 of 2 signatures: nobody built or reproduced it; missing any 2 of alice, bob, carol"},
		{"two keys of one person", []string{"alice", "alice2"}, false, "1 of 2 signatures: alice"},
		{"duplicate signer", []string{"bob", "bob"}, false, "1 of 2 signatures: bob"},
		{"three", []string{"alice2", "bob", "carol"}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var envs [][]byte
			for _, n := range tc.signers {
				envs = append(envs, sign(t, Built, s, testKey(t, n)))
			}
			d := p.Evaluate(Candidate{Subject: s}, attestations(t, p, envs...), testNow)
			if d.Admitted() != tc.ok {
				t.Fatalf("admitted %v, want %v: %v", d.Admitted(), tc.ok, d.Violations)
			}
			if !tc.ok {
				msg := d.Violations[0].Error()
				if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "policy.cue:7:3") || !strings.Contains(msg, s.Path) {
					t.Fatalf("got %q, want it to say %q, the path and the rule's position", msg, tc.want)
				}
			}
		})
	}
}

// One envelope signed twice by one key counts once.
func TestDuplicateSignatureInOneEnvelope(t *testing.T) {
	p := testPolicy(t, Rule{Signatures: 2})
	var e dsse.Envelope
	json.Unmarshal(sign(t, Built, testSubject("a"), testKey(t, "bob")), &e)
	e.Signatures = append(e.Signatures, e.Signatures[0])
	b, _ := json.Marshal(&e)
	atts := attestations(t, p, b)
	if len(atts) != 1 {
		t.Fatalf("got %d attestations, want 1", len(atts))
	}
	if p.Evaluate(Candidate{Subject: testSubject("a")}, atts, testNow).Admitted() {
		t.Fatal("one key signing twice met signatures: 2")
	}
}

func TestReproductionsAndFrom(t *testing.T) {
	p := testPolicy(t, Rule{Signatures: 2, Reproductions: 1, From: []string{"bob", "carol"}})
	s := testSubject("a")
	// alice is not among from: her signature does not count here.
	atts := attestations(t, p, sign(t, Built, s, testKey(t, "alice")), sign(t, Built, s, testKey(t, "bob")))
	d := p.Evaluate(Candidate{Subject: s}, atts, testNow)
	if d.Admitted() || len(d.Violations) != 2 {
		t.Fatalf("got %v, want two violations (signatures, reproductions)", d.Violations)
	}
	if !strings.Contains(d.Violations[1].Message, "0 of 1 reproductions") {
		t.Fatalf("got %q", d.Violations[1].Message)
	}
	atts = append(atts, attestations(t, p, sign(t, Reproduced, s, testKey(t, "carol")))...)
	if d := p.Evaluate(Candidate{Subject: s}, atts, testNow); !d.Admitted() {
		t.Fatalf("bob built, carol reproduced: %v", d.Violations)
	}
}

func TestRevokedAndExpiredKeys(t *testing.T) {
	p := testPolicy(t, Rule{Signatures: 2})
	p.Revoked = []Revocation{{Key: testKey(t, "bob").Public().ID(), Reason: "laptop stolen"}}
	p.People[2].Keys[0].Expires = testNow.Add(-time.Hour)
	s := testSubject("a")
	atts := attestations(t, p, sign(t, Built, s, testKey(t, "alice")), sign(t, Built, s, testKey(t, "bob")), sign(t, Built, s, testKey(t, "carol")))
	d := p.Evaluate(Candidate{Subject: s}, atts, testNow)
	if d.Admitted() {
		t.Fatal("admitted with a revoked and an expired key")
	}
	got := strings.Join(d.Ignored, "\n")
	if !strings.Contains(got, "revoked (laptop stolen)") || !strings.Contains(got, "expired on") {
		t.Fatalf("ignored: %s", got)
	}
	// Before it expired, carol's key counted.
	if d := p.Evaluate(Candidate{Subject: s}, atts, testNow.Add(-2*time.Hour)); !d.Admitted() {
		t.Fatalf("before expiry: %v", d.Violations)
	}
}

func TestPinnedAdmittedOnPin(t *testing.T) {
	p := testPolicy(t, Rule{Signatures: 3})
	d := p.Evaluate(Candidate{Subject: testSubject("a"), Pinned: true}, nil, testNow)
	if !d.Admitted() || !d.OnPin {
		t.Fatal("a pinned path was not admitted on its pin")
	}
}

func TestRulesApply(t *testing.T) {
	p := testPolicy(t, Rule{Groups: []string{"base"}, Signatures: 2}, Rule{Names: []string{"go-*"}, Signatures: 3})
	s := testSubject("a") // named age
	atts := attestations(t, p, sign(t, Built, s, testKey(t, "bob")))
	for _, tc := range []struct {
		attr string
		ok   bool
	}{{"base.packages.age", false}, {"based.age", true}, {"images.server", true}, {"", false}} {
		if d := p.Evaluate(Candidate{Subject: s, Attr: tc.attr}, atts, testNow); d.Admitted() != tc.ok {
			t.Errorf("attr %q: admitted %v, want %v", tc.attr, d.Admitted(), tc.ok)
		}
	}
}

// A configuration's policy can add requirements, never remove the store
// owner's: both are evaluated, each must hold.
func TestConfigurationCannotLoosen(t *testing.T) {
	owner := testPolicy(t, Rule{Signatures: 2})
	owner.Source = "the store owner's policy"
	loose := testPolicy(t, Rule{Signatures: 1})
	loose.Source = "system.cue"
	s := testSubject("a")
	atts := attestations(t, owner, sign(t, Built, s, testKey(t, "bob")))
	var refused []string
	for _, d := range Admit([]*Policy{owner, loose}, Candidate{Subject: s}, atts, testNow) {
		if !d.Admitted() {
			refused = append(refused, d.Policy)
		}
	}
	if strings.Join(refused, ",") != "the store owner's policy" {
		t.Fatalf("refused by %v, want the owner's policy alone", refused)
	}
}

func TestPolicyCheck(t *testing.T) {
	k := testKey(t, "alice").Public()
	for name, p := range map[string]*Policy{
		"key of two people": {People: []Person{{Name: "a", Keys: []Key{{Public: k}}}, {Name: "b", Keys: []Key{{Public: k}}}}},
		"unknown from":      {People: []Person{{Name: "a"}}, Rules: []Rule{{From: []string{"z"}}}},
		"unmeetable":        {People: []Person{{Name: "a"}}, Rules: []Rule{{Signatures: 2}}},
		"person twice":      {People: []Person{{Name: "a"}, {Name: "a"}}},
		"bad pattern":       {People: []Person{{Name: "a"}}, Rules: []Rule{{Names: []string{"["}}}},
	} {
		if err := p.Check(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDir(t *testing.T) {
	d := Dir(t.TempDir())
	base := "0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghijk-age"
	env := sign(t, Built, testSubject("a"), testKey(t, "bob"))
	f, added, err := d.Add(base, env)
	if err != nil || !added {
		t.Fatalf("Add: %v, %v", added, err)
	}
	if _, added, _ := d.Add(base, env); added {
		t.Fatal("the same envelope was added twice")
	}
	got, err := d.List(base)
	if err != nil || len(got) != 1 || string(got[0]) != string(env) {
		t.Fatalf("List: %d, %v", len(got), err)
	}
	os.Chmod(f, 0o644)
	os.WriteFile(f, append(env, ' '), 0o644)
	if _, err := d.List(base); err == nil || !strings.Contains(err.Error(), "not to its name") {
		t.Fatalf("tampered file: got %v", err)
	}
	for _, bad := range []string{"", "../x", ".tmp", "a/b"} {
		if _, _, err := d.Add(bad, env); err == nil {
			t.Errorf("Add(%q): no error", bad)
		}
	}
}

func TestNoRulesMeansOneSignature(t *testing.T) {
	p := testPolicy(t)
	s := testSubject("a")
	if d := p.Evaluate(Candidate{Subject: s}, nil, testNow); d.Admitted() {
		t.Fatal("a policy without rules admitted an unsigned path")
	}
	if d := p.Evaluate(Candidate{Subject: s}, attestations(t, p, sign(t, Built, s, testKey(t, "carol"))), testNow); !d.Admitted() {
		t.Fatalf("one signature: %v", d.Violations)
	}
}

func TestKeyStatus(t *testing.T) {
	p := testPolicy(t)
	bob, carol := testKey(t, "bob").Public().ID(), testKey(t, "carol").Public().ID()
	p.Revoked = []Revocation{{Key: bob, Reason: "lost"}}
	p.People[2].Keys[0].Expires = testNow
	for _, tc := range []struct {
		id            KeyID
		person, probl string
		known         bool
	}{
		{testKey(t, "alice2").Public().ID(), "alice", "", true},
		{bob, "bob", "revoked (lost)", true},
		{carol, "carol", "expired on 2026-11-27T12:00:00Z", true},
		{testKey(t, "mallory").Public().ID(), "", "", false},
	} {
		person, known, problem := p.KeyStatus(tc.id, testNow)
		if person != tc.person || known != tc.known || problem != tc.probl {
			t.Errorf("%s: got %q %v %q, want %q %v %q", tc.id, person, known, problem, tc.person, tc.known, tc.probl)
		}
	}
}

// Builds and Reproductions say "k built it and k reproduced it": a
// reproduction is not a build, and one person's build is one.
func TestBuildsAndReproductions(t *testing.T) {
	p := testPolicy(t, Rule{Builds: 2, Reproductions: 2})
	s := testSubject("a")
	att := func(kind Kind, who string) []Attestation {
		return attestations(t, p, sign(t, kind, s, testKey(t, who)))
	}
	// Two reproductions: they count as signatures, never as builds.
	atts := append(att(Reproduced, "bob"), att(Reproduced, "carol")...)
	d := p.Evaluate(Candidate{Subject: s}, atts, testNow)
	if len(d.Violations) != 1 || !strings.Contains(d.Violations[0].Message, "0 of 2 builds: nobody built it; missing any 2 of alice, bob, carol") {
		t.Fatalf("two reproductions, no build: %v", d.Violations)
	}
	// Two builders (alice's two keys count once) and one reproducer: k−1.
	atts = append(att(Built, "alice"), att(Built, "alice2")...)
	atts = append(atts, att(Built, "bob")...)
	atts = append(atts, att(Reproduced, "carol")...)
	d = p.Evaluate(Candidate{Subject: s}, atts, testNow)
	if len(d.Violations) != 1 || !strings.Contains(d.Violations[0].Message, "1 of 2 reproductions: carol reproduced it") {
		t.Fatalf("k builders, k−1 reproducers: %v", d.Violations)
	}
	atts = append(atts, att(Reproduced, "alice")...)
	if d := p.Evaluate(Candidate{Subject: s}, atts, testNow); !d.Admitted() {
		t.Fatalf("k builders and k reproducers: %v", d.Violations)
	}
	if err := (&Policy{People: p.People, Rules: []Rule{{Builds: 4}}}).Check(); err == nil || !strings.Contains(err.Error(), "needs 4 people but counts only 3") {
		t.Fatalf("builds: 4 of 3 people: %v", err)
	}
}
