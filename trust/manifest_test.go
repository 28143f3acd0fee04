package trust

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

func testManifest(t *testing.T, content string) []byte {
	t.Helper()
	a, b := testSubject(content), testSubject("go")
	b.Path = "/heph/store/zyxwvsrqpnmlkjihgfdcba9876543210zyxwvsrqpnmlkjihgf-go"
	m := &Manifest{Type: ManifestType, Roots: map[string]string{"base.packages.age": a.Path},
		Paths: []ManifestPath{{Path: a.Path, ContentHash: a.ContentHash}, {Path: b.Path, ContentHash: b.ContentHash}}}
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestManifestOneForm(t *testing.T) {
	b := testManifest(t, "age")
	m, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := m.Marshal()
	if !bytes.Equal(again, b) {
		t.Fatal("a manifest read and written changed")
	}
	for name, bad := range map[string][]byte{
		"spaces":     bytes.ReplaceAll(b, []byte("\t"), []byte("  ")),
		"no final":   bytes.TrimSuffix(b, []byte("\n")),
		"unsorted":   []byte(strings.Replace(string(b), "0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghijk-age", "zzzz56789abcdfghijklmnpqrsvwxyz0123456789abcdfghijk-age", 2)),
		"not json":   []byte("{"),
		"extra":      bytes.Replace(b, []byte(`"_type"`), []byte(`"extra": 1, "_type"`), 1),
		"bad hash":   bytes.Replace(b, []byte(`"blake3:`), []byte(`"sha1:`), 1),
		"bad root":   bytes.Replace(b, []byte(`"base.packages.age": "/heph/store/0`), []byte(`"base.packages.age": "/heph/store/1`), 1),
		"wrong type": bytes.Replace(b, []byte(ManifestType), []byte("https://example.com/x"), 1),
	} {
		if _, err := ParseManifest(bad); err == nil {
			t.Errorf("%s: read a manifest that is not in its one form", name)
		}
	}
}

func TestManifestSignatures(t *testing.T) {
	b := testManifest(t, "age")
	p := testPolicy(t)
	alice, alice2, bob := testKey(t, "alice"), testKey(t, "alice2"), testKey(t, "bob")
	envA, err := SignManifest(b, alice)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := SignManifest(b, alice); !bytes.Equal(again, envA) {
		t.Error("signing the same manifest twice gave two envelopes")
	}
	var ids []KeyID
	for _, k := range []*SecretKey{alice, alice2, bob, testKey(t, "mallory")} {
		env, err := SignManifest(b, k)
		if err != nil {
			t.Fatal(err)
		}
		valid, problems, err := VerifyManifestSignature(env, b, p.Keys())
		if err != nil {
			t.Fatal(err)
		}
		if k.Name == "mallory" {
			if len(valid) != 0 || len(problems) != 1 {
				t.Fatalf("mallory: valid %v, problems %v; want an unknown key", valid, problems)
			}
			ids = append(ids, problems[0].Key)
			continue
		}
		ids = append(ids, valid...)
	}
	people, notCounted := p.Signers(ids, testNow)
	if fmt.Sprint(people) != "[alice bob]" || len(notCounted) != 1 || !strings.Contains(notCounted[0], "does not know") {
		t.Fatalf("signers %v, not counted %v; want alice (two keys, once) and bob, mallory not counted", people, notCounted)
	}
	p.Revoked = []Revocation{{Key: bob.Public().ID(), Reason: "lost"}}
	if people, _ := p.Signers(ids, testNow); fmt.Sprint(people) != "[alice]" {
		t.Fatalf("with bob's key revoked: %v", people)
	}
	p.People[0].Keys[0].Expires = testNow.Add(-time.Hour)
	if people, _ := p.Signers(ids, testNow); fmt.Sprint(people) != "[alice]" {
		t.Fatalf("alice's first key expired, her second counts: %v", people)
	}

	// Another manifest: the signature is worthless for it.
	other := testManifest(t, "other age")
	if _, _, err := VerifyManifestSignature(envA, other, p.Keys()); err == nil || !strings.Contains(err.Error(), "not this one") {
		t.Fatalf("got %v, want the signature refused for other bytes", err)
	}
	// A tampered envelope: the signature no longer verifies.
	tampered := bytes.Replace(envA, []byte(`"sig":"`), []byte(`"sig":"AA`), 1)
	if valid, problems, err := VerifyManifestSignature(tampered, b, p.Keys()); err != nil || len(valid) != 0 || len(problems) != 1 || !strings.Contains(problems[0].Reason, "bad signature") {
		t.Fatalf("tampered: valid %v, problems %v, err %v", valid, problems, err)
	}
	// A store path's attestation is not a manifest's signature.
	att := sign(t, Built, testSubject("age"), alice)
	if _, _, err := VerifyManifestSignature(att, b, p.Keys()); err == nil {
		t.Fatal("a store path's attestation passed as a manifest's signature")
	}
}
