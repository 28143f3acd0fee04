package server

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Threat reports (issue 19): the sentinel of every image posts the
// alerts it sees (a file added, changed or removed under /bin, /etc…; a
// new listening port) with a token of the reporter role, which is handed
// to the machine at boot and is never in its image. The server keeps
// each alert with the node that saw it, when the server received it and
// the token that reported it, and shows them per node and per day.
//
// The migration: threatSchema is created, as every table, with CREATE
// TABLE IF NOT EXISTS when the database is opened, so a database made
// before threat reports gets the table the first time a newer server
// opens it; nothing else changes (the schema version stays 1).
const threatSchema = `
CREATE TABLE IF NOT EXISTS threats (
	id          BIGINT PRIMARY KEY,
	node        TEXT NOT NULL,
	at          BIGINT NOT NULL,
	alert       TEXT NOT NULL,
	reported_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS threats_node ON threats(node, at);
CREATE INDEX IF NOT EXISTS threats_at ON threats(at);
`

// The bounds of what one report admits.
const (
	// MaxThreatAlerts is how many alerts one report may carry.
	MaxThreatAlerts = 64
	// MaxThreatAlertLen is the longest alert, in bytes.
	MaxThreatAlertLen = 512
	// MaxThreatsPerNodeDay is how many alerts a node may report in one
	// UTC day; more are refused (a flood fills nothing).
	MaxThreatsPerNodeDay = 2000
	// maxThreatBody bounds a report's request body.
	maxThreatBody = 64 << 10
)

// nodeName is what a node may be called: its hostname.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ThreatReport is what a sentinel posts: its node's name and the alerts
// it saw since its last report.
type ThreatReport struct {
	Node   string   `json:"node"`
	Alerts []string `json:"alerts"`
}

// Threat is one alert the server holds.
type Threat struct {
	ID         int64     `json:"id"`
	Node       string    `json:"node"`
	At         time.Time `json:"at"`
	Alert      string    `json:"alert"`
	ReportedBy string    `json:"reportedBy"`
}

// NodeDayCount is a node's alerts on one day.
type NodeDayCount struct {
	Node  string `json:"node"`
	Day   string `json:"day"` // 2006-01-02
	Count int    `json:"count"`
}

// Threats is what GET /api/v1/threats answers: the latest alerts and the
// counts per day and per node and day (UTC dates, sorted).
type Threats struct {
	Recent     []Threat       `json:"recent"`
	PerDay     []DayCount     `json:"perDay"`
	PerNodeDay []NodeDayCount `json:"perNodeDay"`
}

// checkReport says what is wrong with r, if anything.
func checkReport(r ThreatReport) error {
	if !nodeName.MatchString(r.Node) {
		return badRequest("threat report: node %q is not a host name (letters, digits, '.', '_', '-'; at most 63)", truncate(r.Node, 80))
	}
	if len(r.Alerts) == 0 {
		return badRequest("threat report: no alerts")
	}
	if len(r.Alerts) > MaxThreatAlerts {
		return badRequest("threat report: %d alerts; at most %d a report", len(r.Alerts), MaxThreatAlerts)
	}
	for i, a := range r.Alerts {
		switch {
		case a == "":
			return badRequest("threat report: alert %d is empty", i+1)
		case len(a) > MaxThreatAlertLen:
			return badRequest("threat report: alert %d is %d bytes; at most %d", i+1, len(a), MaxThreatAlertLen)
		case !utf8.ValidString(a):
			return badRequest("threat report: alert %d is not UTF-8", i+1)
		case strings.IndexFunc(a, unicode.IsControl) >= 0:
			return badRequest("threat report: alert %d holds a control character", i+1)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ReportThreats stores the alerts of r, reported by who (the reporter
// token's name), at the server's time: never the node's, which an
// attacker on it could set. It returns how many it kept.
func (s *Server) ReportThreats(ctx context.Context, who string, r ThreatReport) (int, error) {
	if err := checkReport(r); err != nil {
		s.audit(nil, who, "report threats", r.Node, "refused", err.Error())
		return 0, err
	}
	now := s.clock.Now().UTC()
	dayStart := now.Truncate(24 * time.Hour)
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM threats WHERE node = ? AND at >= ?`, r.Node, unix(dayStart)).Scan(&n); err != nil {
			return err
		}
		if n+len(r.Alerts) > MaxThreatsPerNodeDay {
			return &RefusedError{What: "threat report from " + r.Node, Reasons: []string{
				fmt.Sprintf("node %s reported %d alerts today; at most %d a day", r.Node, n, MaxThreatsPerNodeDay)}}
		}
		id, err := nextID(tx, "threats")
		if err != nil {
			return err
		}
		for _, a := range r.Alerts {
			if _, err := tx.Exec(`INSERT INTO threats(id, node, at, alert, reported_by) VALUES (?, ?, ?, ?, ?)`,
				id, r.Node, unix(now), a, who); err != nil {
				return err
			}
			id++
		}
		return s.audit(tx, who, "report threats", r.Node, "ok", fmt.Sprintf("%d alerts", len(r.Alerts)))
	})
	if err != nil {
		if _, ok := err.(*RefusedError); ok {
			s.audit(nil, who, "report threats", r.Node, "refused", err.Error())
		}
		return 0, err
	}
	return len(r.Alerts), nil
}

// Threats returns the latest limit alerts, newest first, and the counts
// per day and per node and day.
func (s *Server) Threats(ctx context.Context, limit int) (*Threats, error) {
	out := &Threats{Recent: []Threat{}, PerDay: []DayCount{}, PerNodeDay: []NodeDayCount{}}
	// One read transaction: the list and the counts agree.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, node, at, alert, reported_by FROM threats ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var t Threat
		var at int64
		if err := rows.Scan(&t.ID, &t.Node, &at, &t.Alert, &t.ReportedBy); err != nil {
			rows.Close()
			return nil, err
		}
		t.At = fromUnix(at)
		out.Recent = append(out.Recent, t)
	}
	rows.Close()
	// Per node and day, counted in Go: portable SQL has no one date
	// function.
	rows, err = tx.QueryContext(ctx, `SELECT node, at FROM threats ORDER BY at, node`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	perDay := map[string]int{}
	perNode := map[[2]string]int{}
	for rows.Next() {
		var node string
		var at int64
		if err := rows.Scan(&node, &at); err != nil {
			return nil, err
		}
		day := fromUnix(at).Format(time.DateOnly)
		perDay[day]++
		perNode[[2]string{node, day}]++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, d := range sortedKeys(perDay) {
		out.PerDay = append(out.PerDay, DayCount{Day: d, Count: perDay[d]})
	}
	for k, n := range perNode {
		out.PerNodeDay = append(out.PerNodeDay, NodeDayCount{Node: k[0], Day: k[1], Count: n})
	}
	sortNodeDays(out.PerNodeDay)
	return out, nil
}

// sortNodeDays sorts newest day first, then by node.
func sortNodeDays(ns []NodeDayCount) {
	slices.SortFunc(ns, func(a, b NodeDayCount) int {
		if c := strings.Compare(b.Day, a.Day); c != 0 {
			return c
		}
		return strings.Compare(a.Node, b.Node)
	})
}

// threatRoutes adds the threat API to mux.
func (s *Server) threatRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/threats", s.need(Reporter, "report threats", func(w http.ResponseWriter, r *http.Request, who string, _ Role) {
		r.Body = http.MaxBytesReader(w, r.Body, maxThreatBody)
		var req ThreatReport
		if !decode(w, r, &req) {
			return
		}
		n, err := s.ReportThreats(r.Context(), who, req)
		reply(w, map[string]int{"kept": n}, err)
	}))
	mux.HandleFunc("GET /api/v1/threats", s.read(func(w http.ResponseWriter, r *http.Request, _ string) {
		t, err := s.Threats(r.Context(), 100)
		reply(w, t, err)
	}))
}

// ReportThreats posts a node's alerts (a reporter token).
func (c *Client) ReportThreats(ctx context.Context, r ThreatReport) (int, error) {
	var out struct {
		Kept int `json:"kept"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/threats", r, &out)
	return out.Kept, err
}

// Threats returns the latest alerts and their counts.
func (c *Client) Threats(ctx context.Context) (*Threats, error) {
	var out Threats
	if err := c.do(ctx, http.MethodGet, "/api/v1/threats", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
