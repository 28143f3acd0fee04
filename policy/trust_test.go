package policy

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hephc.dev/hephc/trust"
)

func trustKey(t *testing.T, name string) string {
	seed := sha256.Sum256([]byte(name))
	k, err := trust.KeyFromSeed(name, seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().String()
}

func writeTrust(t *testing.T, body string) string {
	dir := t.TempDir()
	f := filepath.Join(dir, "trust.cue")
	src := "package org\n\nimport \"hephc.dev/heph\"\n\npolicy: heph.#Policy & {\n\ttrust: {\n" + body + "\n\t}\n}\n"
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLoadTrust(t *testing.T) {
	alice, bob := trustKey(t, "alice"), trustKey(t, "bob")
	f := writeTrust(t, `		people: {
			alice: keys: [{key: "`+alice+`"}]
			bob: keys: [{key: "`+bob+` bob@laptop", expires: "2027-01-01T00:00:00Z"}]
		}
		revoked: [{key: "`+alice+`", reason: "lost"}]
		rules: [
			{},
			{groups: ["base"], signatures: 2, reproductions: 1, from: ["alice", "bob"]},
		]`)
	tps, err := LoadTrust(filepath.Dir(f), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(tps) != 1 {
		t.Fatalf("got %d trust policies, want 1", len(tps))
	}
	tp := tps[0]
	if len(tp.People) != 2 || tp.People[1].Name != "bob" || tp.People[1].Keys[0].Expires.Year() != 2027 {
		t.Fatalf("people: %+v", tp.People)
	}
	if len(tp.Revoked) != 1 || tp.Revoked[0].Key != tp.People[0].Keys[0].Public.ID() || tp.Revoked[0].Reason != "lost" {
		t.Fatalf("revoked: %+v", tp.Revoked)
	}
	if len(tp.Rules) != 2 || tp.Rules[0].Signatures != 1 || tp.Rules[1].Reproductions != 1 || strings.Join(tp.Rules[1].Groups, ",") != "base" {
		t.Fatalf("rules: %+v", tp.Rules)
	}
	if p := tp.Rules[1].Pos; !strings.HasSuffix(p.File, "trust.cue") || p.Line != 14 {
		t.Fatalf("rule position %s, want trust.cue:14", p)
	}
}

func TestLoadTrustRefuses(t *testing.T) {
	alice := trustKey(t, "alice")
	for name, tc := range map[string]struct{ body, want string }{
		"not a key":         {`people: alice: keys: [{key: "ssh-rsa AAAA"}]`, "ssh-ed25519"},
		"unknown from":      {`people: alice: keys: [{key: "` + alice + `"}]` + "\n" + `rules: [{from: ["mallory"]}]`, "mallory"},
		"unmeetable":        {`people: alice: keys: [{key: "` + alice + `"}]` + "\n" + `rules: [{signatures: 2}]`, "needs 2 people"},
		"one key two names": {`people: {alice: keys: [{key: "` + alice + `"}], bob: keys: [{key: "` + alice + `"}]}`, "belongs to one person"},
		"negative":          {`people: alice: keys: [{key: "` + alice + `"}]` + "\n" + `rules: [{signatures: -1}]`, "signatures"},
		"bad time":          {`people: alice: keys: [{key: "` + alice + `", expires: "2027-13-01T00:00:00Z"}]`, "RFC 3339"},
	} {
		t.Run(name, func(t *testing.T) {
			f := writeTrust(t, tc.body)
			_, err := LoadTrust(filepath.Dir(f), f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "trust.cue:") {
				t.Fatalf("got %v, want a position", err)
			}
		})
	}
}

func TestLoadStoreConfig(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "config.cue")
	src := "package store\n\nimport \"hephc.dev/heph\"\n\nheph.#StoreConfig & {\n\tpolicy: trust: people: alice: keys: [{key: \"" + trustKey(t, "alice") + "\"}]\n\tsigningKey: \"keys/alice.key\"\n}\n"
	os.WriteFile(f, []byte(src), 0o644)
	sc, err := LoadStoreConfig(dir, f)
	if err != nil {
		t.Fatal(err)
	}
	if sc.SigningKey != filepath.Join(dir, "keys", "alice.key") || len(sc.Trust) != 1 || sc.Trust[0].People[0].Name != "alice" {
		t.Fatalf("got %+v", sc)
	}
	os.WriteFile(f, []byte("package store\n\nimport \"hephc.dev/heph\"\n\nheph.#StoreConfig & {signingKey: 3}\n"), 0o644)
	if _, err := LoadStoreConfig(dir, f); err == nil || !strings.Contains(err.Error(), "config.cue:") {
		t.Fatalf("a bad signingKey: got %v, want an error with a position", err)
	}
}
