package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Issue is a problem reported against one package version: while open
// it blocks that version's promotion.
type Issue struct {
	ID       int64      `json:"id"`
	Attr     string     `json:"attr"`
	Version  string     `json:"version"`
	Title    string     `json:"title"`
	OpenedBy string     `json:"openedBy"`
	OpenedAt time.Time  `json:"openedAt"`
	ClosedBy string     `json:"closedBy,omitempty"`
	ClosedAt *time.Time `json:"closedAt,omitempty"`
	Comments []Comment  `json:"comments,omitempty"`
}

// Comment is one comment on an issue.
type Comment struct {
	Who  string    `json:"who"`
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

// OpenIssue opens an issue against a published package version, as who,
// and evaluates the rules again.
func (s *Server) OpenIssue(ctx context.Context, who, attr, version, title string) (int64, error) {
	title = strings.TrimSpace(title)
	if title == "" {
		return 0, errors.New("opening an issue: a title is needed")
	}
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM packages WHERE attr = ? AND version = ?`, attr, version).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return &NotFoundError{What: fmt.Sprintf("package %s %s (never published)", attr, version)}
		}
		var err error
		if id, err = nextID(tx, "issues"); err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO issues(id, attr, version, title, opened_by, opened_at) VALUES (?, ?, ?, ?, ?, ?)`,
			id, attr, version, title, who, unix(s.clock.Now())); err != nil {
			return err
		}
		return s.audit(tx, who, "issue open", fmt.Sprintf("#%d %s %s", id, attr, version), "ok", title)
	})
	if err != nil {
		return 0, err
	}
	err = s.afterEvent(ctx)
	return id, err
}

// CommentIssue adds a comment to issue id, as who.
func (s *Server) CommentIssue(ctx context.Context, who string, id int64, text string) error {
	if strings.TrimSpace(text) == "" {
		return errors.New("commenting: the comment is empty")
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := getIssue(ctx, tx, id); err != nil {
			return err
		}
		var n int64
		if err := tx.QueryRow(`SELECT COALESCE(MAX(n), 0) + 1 FROM issue_comments WHERE issue = ?`, id).Scan(&n); err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO issue_comments(issue, n, who, at, text) VALUES (?, ?, ?, ?, ?)`, id, n, who, unix(s.clock.Now()), text); err != nil {
			return err
		}
		return s.audit(tx, who, "issue comment", fmt.Sprintf("#%d", id), "ok", "")
	})
}

// CloseIssue closes issue id, as who, with a comment when text is not
// empty; maintainer says who may close anyone's issue (else only its
// opener may). Then the rules are evaluated again.
func (s *Server) CloseIssue(ctx context.Context, who string, maintainer bool, id int64, text string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		is, err := getIssue(ctx, tx, id)
		if err != nil {
			return err
		}
		if is.ClosedAt != nil {
			return fmt.Errorf("issue #%d was closed by %s", id, is.ClosedBy)
		}
		if !maintainer && is.OpenedBy != who {
			return &ForbiddenError{Who: who, Action: fmt.Sprintf("close issue #%d", id), Need: "maintainer (or the issue's opener)"}
		}
		now := unix(s.clock.Now())
		if text != "" {
			var n int64
			if err := tx.QueryRow(`SELECT COALESCE(MAX(n), 0) + 1 FROM issue_comments WHERE issue = ?`, id).Scan(&n); err != nil {
				return err
			}
			if _, err := tx.Exec(`INSERT INTO issue_comments(issue, n, who, at, text) VALUES (?, ?, ?, ?, ?)`, id, n, who, now, text); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(`UPDATE issues SET closed_by = ?, closed_at = ? WHERE id = ?`, who, now, id); err != nil {
			return err
		}
		return s.audit(tx, who, "issue close", fmt.Sprintf("#%d", id), "ok", text)
	})
	if err != nil {
		var fe *ForbiddenError
		if errors.As(err, &fe) {
			s.audit(nil, who, "issue close", fmt.Sprintf("#%d", id), "forbidden", err.Error())
		}
		return err
	}
	err = s.afterEvent(ctx)
	return err
}

func getIssue(ctx context.Context, q querier, id int64) (*Issue, error) {
	is := &Issue{ID: id}
	var opened, closed int64
	err := q.QueryRowContext(ctx, `SELECT attr, version, title, opened_by, opened_at, closed_by, closed_at FROM issues WHERE id = ?`, id).
		Scan(&is.Attr, &is.Version, &is.Title, &is.OpenedBy, &opened, &is.ClosedBy, &closed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &NotFoundError{What: fmt.Sprintf("issue #%d", id)}
	}
	if err != nil {
		return nil, err
	}
	is.OpenedAt = fromUnix(opened)
	if closed != 0 {
		t := fromUnix(closed)
		is.ClosedAt = &t
	}
	rows, err := q.QueryContext(ctx, `SELECT who, at, text FROM issue_comments WHERE issue = ? ORDER BY n`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c Comment
		var at int64
		if err := rows.Scan(&c.Who, &at, &c.Text); err != nil {
			return nil, err
		}
		c.At = fromUnix(at)
		is.Comments = append(is.Comments, c)
	}
	return is, rows.Err()
}

// Issues returns the issues of attr (all when ""), open ones only when
// open, by id.
func (s *Server) Issues(ctx context.Context, attr string, open bool) ([]*Issue, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM issues WHERE (? = '' OR attr = ?) AND (? = 0 OR closed_at = 0) ORDER BY id`, attr, attr, boolInt(open))
	if err != nil {
		return nil, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	var out []*Issue
	for _, id := range ids {
		is, err := getIssue(ctx, s.db, id)
		if err != nil {
			return nil, err
		}
		out = append(out, is)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// IssueStats are the issue counts: open, closed, and closed per day
// (UTC dates, sorted).
type IssueStats struct {
	Open         int        `json:"open"`
	Closed       int        `json:"closed"`
	ClosedPerDay []DayCount `json:"closedPerDay"`
}

// DayCount is a count on one day.
type DayCount struct {
	Day   string `json:"day"` // 2006-01-02
	Count int    `json:"count"`
}

// IssueStats counts the issues.
func (s *Server) IssueStats(ctx context.Context) (*IssueStats, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT closed_at FROM issues ORDER BY closed_at`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	st := &IssueStats{ClosedPerDay: []DayCount{}}
	for rows.Next() {
		var c int64
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		if c == 0 {
			st.Open++
			continue
		}
		st.Closed++
		day := fromUnix(c).Format(time.DateOnly)
		if n := len(st.ClosedPerDay); n > 0 && st.ClosedPerDay[n-1].Day == day {
			st.ClosedPerDay[n-1].Count++
		} else {
			st.ClosedPerDay = append(st.ClosedPerDay, DayCount{Day: day, Count: 1})
		}
	}
	return st, rows.Err()
}

// Role is what a token may do. Each role may do what the ones before it
// may: reader (read), reporter (open and comment issues, close its own),
// publisher (publish, add attestations), maintainer (promote, roll back,
// close any issue).
type Role string

const (
	Reader     Role = "reader"
	Reporter   Role = "reporter"
	Publisher  Role = "publisher"
	Maintainer Role = "maintainer"
)

// Roles are the roles, weakest first.
var Roles = []Role{Reader, Reporter, Publisher, Maintainer}

// Allows reports whether r may do what need allows.
func (r Role) Allows(need Role) bool {
	i, j := slices.Index(Roles, r), slices.Index(Roles, need)
	return i >= 0 && j >= 0 && i >= j
}

// ForbiddenError is a request by someone without the role (HTTP 403).
type ForbiddenError struct {
	Who, Action string
	Need        string
}

func (e *ForbiddenError) Error() string {
	who := e.Who
	if who == "" {
		who = "an anonymous request"
	}
	return fmt.Sprintf("%s may not %s: that needs the %s role", who, e.Action, e.Need)
}

// NotFoundError is something that is not there (HTTP 404).
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return e.What + " does not exist" }

// tokenPrefix starts every token, so a leaked one is recognizable.
const tokenPrefix = "heph_"

func tokenHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// CreateToken makes a token named name with role, as who (an
// administrator at the server's console), and returns its secret: shown
// once, stored only as its sha256.
func (s *Server) CreateToken(ctx context.Context, who, name string, role Role) (string, error) {
	if !slices.Contains(Roles, role) {
		return "", fmt.Errorf("token %s: %q is not a role (reader, reporter, publisher, maintainer)", name, role)
	}
	if name == "" || strings.ContainsAny(name, " \t\n") {
		return "", fmt.Errorf("token name %q: want a word", name)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM tokens WHERE name = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("token %s exists: revoke it first", name)
		}
		if _, err := tx.Exec(`INSERT INTO tokens(hash, name, role, created_at, created_by) VALUES (?, ?, ?, ?, ?)`,
			tokenHash(secret), name, string(role), unix(s.clock.Now()), who); err != nil {
			return err
		}
		return s.audit(tx, who, "token create", name, "ok", string(role))
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// RevokeToken deletes the token named name, as who.
func (s *Server) RevokeToken(ctx context.Context, who, name string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		r, err := tx.Exec(`DELETE FROM tokens WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return &NotFoundError{What: "token " + name}
		}
		return s.audit(tx, who, "token revoke", name, "ok", "")
	})
}

// Authenticate returns the name and role of the token secret.
func (s *Server) Authenticate(ctx context.Context, secret string) (string, Role, bool) {
	if !strings.HasPrefix(secret, tokenPrefix) {
		return "", "", false
	}
	var name, role string
	if err := s.db.QueryRowContext(ctx, `SELECT name, role FROM tokens WHERE hash = ?`, tokenHash(secret)).Scan(&name, &role); err != nil {
		return "", "", false
	}
	return name, Role(role), true
}
