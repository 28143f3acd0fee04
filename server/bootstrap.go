package server

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"slices"
)

// bootTokenRE is a token made outside the server: heph_ and at least 32
// random bytes in unpadded base64url (43 characters), as CreateToken makes
// them.
var bootTokenRE = regexp.MustCompile(`^heph_[A-Za-z0-9_-]{43,128}$`)

// AdoptToken keeps secret, a token made outside the server and handed to
// its machine at boot (the server's own image reads it from the kernel
// command line: hephc serve --boot-tokens), as the token name with role,
// stored hashed as every token is. A token of that name with another
// secret is replaced, so the secret of this boot is the one that counts;
// the same secret is left as it is. A secret that is not heph_ and at
// least 32 random bytes in base64url is refused: it could be guessed.
// It reports whether the token was stored anew.
func (s *Server) AdoptToken(ctx context.Context, who, name string, role Role, secret string) (bool, error) {
	if !slices.Contains(Roles, role) {
		return false, fmt.Errorf("token %s: %q is not a role (reader, reporter, publisher, maintainer)", name, role)
	}
	if !bootTokenRE.MatchString(secret) {
		return false, fmt.Errorf("token %s: a token handed over at boot is heph_ and 43 to 128 base64url characters (32 random bytes or more), e.g. heph_$(head -c 32 /dev/urandom | basenc --base64url | tr -d =)", name)
	}
	adopted := false
	err := s.write(ctx, func(tx *sql.Tx) error {
		var hash, had string
		err := tx.QueryRow(`SELECT hash, role FROM tokens WHERE name = ?`, name).Scan(&hash, &had)
		switch {
		case err == nil && hash == tokenHash(secret) && had == string(role):
			return nil
		case err == nil:
			if _, err := tx.Exec(`DELETE FROM tokens WHERE name = ?`, name); err != nil {
				return err
			}
		case err != sql.ErrNoRows:
			return err
		}
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM tokens WHERE hash = ?`, tokenHash(secret)).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("token %s: its secret is another token's: hand over a token of its own", name)
		}
		if _, err := tx.Exec(`INSERT INTO tokens(hash, name, role, created_at, created_by) VALUES (?, ?, ?, ?, ?)`,
			tokenHash(secret), name, string(role), unix(s.clock.Now()), who); err != nil {
			return err
		}
		adopted = true
		return s.audit(tx, who, "token adopt", name, "ok", string(role))
	})
	return adopted, err
}
