package server

import (
	"strings"
	"testing"
)

// TestAdoptToken: a token handed over at boot is kept hashed with its
// role, the same secret again changes nothing, a new secret replaces the
// old (which stops working), and a weak or reused secret is refused.
func TestAdoptToken(t *testing.T) {
	e := newEnv(t)
	const first = "heph_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	const second = "heph_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	if n, err := e.srv.AdoptToken(ctx, "boot", "boot-admin", Maintainer, first); err != nil || !n {
		t.Fatalf("adopt: %v %v", n, err)
	}
	if who, role, ok := e.srv.Authenticate(ctx, first); !ok || who != "boot-admin" || role != Maintainer {
		t.Fatalf("authenticate: %q %q %v", who, role, ok)
	}
	if n, err := e.srv.AdoptToken(ctx, "boot", "boot-admin", Maintainer, first); err != nil || n {
		t.Fatalf("adopting the same secret again: %v %v", n, err)
	}
	if n, err := e.srv.AdoptToken(ctx, "boot", "boot-admin", Maintainer, second); err != nil || !n {
		t.Fatalf("adopting a new secret: %v %v", n, err)
	}
	if _, _, ok := e.srv.Authenticate(ctx, first); ok {
		t.Fatal("the replaced secret still authenticates")
	}
	if _, err := e.srv.AdoptToken(ctx, "boot", "boot-reporter", Reporter, second); err == nil || !strings.Contains(err.Error(), "another token's") {
		t.Fatalf("a secret of two tokens: %v", err)
	}
	for _, weak := range []string{"heph_short", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "heph_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA A"} {
		if _, err := e.srv.AdoptToken(ctx, "boot", "boot-reporter", Reporter, weak); err == nil || !strings.Contains(err.Error(), "43 to 128 base64url") {
			t.Fatalf("weak secret %q: %v", weak, err)
		}
	}
	if _, err := e.srv.AdoptToken(ctx, "boot", "x", "root", first); err == nil {
		t.Fatal("an unknown role was adopted")
	}
	rows, err := e.srv.db.Query(`SELECT hash FROM tokens`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var h string
		rows.Scan(&h)
		if strings.Contains(h, "heph_") {
			t.Fatalf("a secret is stored in the clear: %s", h)
		}
	}
}
