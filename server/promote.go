package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/trust"
)

// Decision is one evaluation of a package version waiting in testing:
// Excuses say, in plain words, why it is not promoted (none: it was).
type Decision struct {
	Attr     string    `json:"attr"`
	Version  string    `json:"version"`
	At       time.Time `json:"at"`
	Promoted bool      `json:"promoted"`
	Excuses  []string  `json:"excuses"`
	// Held are the rules that hold, as the promotion's reasons.
	Held []string `json:"held,omitempty"`
}

type pkgKey struct{ attr, version string }

// group returns the package versions of es, sorted, with their entries.
func group(es []channel.Entry) ([]pkgKey, map[pkgKey][]channel.Entry) {
	m := map[pkgKey][]channel.Entry{}
	var keys []pkgKey
	for _, e := range es {
		k := pkgKey{e.Attr, e.Version}
		if _, ok := m[k]; !ok {
			keys = append(keys, k)
		}
		m[k] = append(m[k], e)
	}
	slices.SortFunc(keys, func(a, b pkgKey) int {
		if c := strings.Compare(a.attr, b.attr); c != 0 {
			return c
		}
		return strings.Compare(a.version, b.version)
	})
	return keys, m
}

// judge evaluates the promotion rules for one package version in
// testing at now.
func (s *Server) judge(ctx context.Context, q querier, k pkgKey, es []channel.Entry, now time.Time) (*Decision, error) {
	d := &Decision{Attr: k.attr, Version: k.version, At: now.UTC().Truncate(time.Second)}
	// Time in testing: since the first of its paths entered.
	since := es[0].Since
	for _, e := range es {
		if e.Since.Before(since) {
			since = e.Since
		}
	}
	in, after := now.Sub(since), s.cfg.Promotion.After
	if in < after {
		d.Excuses = append(d.Excuses, "in testing "+span(in, after))
	} else {
		d.Held = append(d.Held, "in testing "+span(in, after))
	}
	// Once in stable, never promoted again (a rollback may bring a
	// version back into testing).
	var before int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM promotions WHERE attr = ? AND version = ? AND to_channel = ?`, k.attr, k.version, channel.Stable).Scan(&before); err != nil {
		return nil, err
	}
	if before > 0 {
		d.Excuses = append(d.Excuses, "promoted to stable before: never promoted again")
	}
	// Issues.
	rows, err := q.QueryContext(ctx, `SELECT id, title FROM issues WHERE attr = ? AND version = ? AND closed_at = 0 ORDER BY id`, k.attr, k.version)
	if err != nil {
		return nil, err
	}
	n := 0
	for rows.Next() {
		var id int64
		var title string
		if err := rows.Scan(&id, &title); err != nil {
			rows.Close()
			return nil, err
		}
		d.Excuses = append(d.Excuses, fmt.Sprintf("issue #%d open: %s", id, title))
		n++
	}
	rows.Close()
	if n == 0 {
		d.Held = append(d.Held, "no open issue")
	}
	// Tests.
	pkg := Package{Attr: k.attr, Version: k.version}
	for _, e := range es {
		pkg.Paths = append(pkg.Paths, e.Path)
	}
	results, err := s.cfg.Tests.Results(ctx, pkg)
	if err != nil {
		d.Excuses = append(d.Excuses, "tests unknown: "+err.Error())
	} else {
		results, unsigned := counted(results)
		failed := 0
		for _, r := range results {
			if !r.Passed {
				d.Excuses = append(d.Excuses, "test "+r.Name+" failed")
				failed++
			}
		}
		if failed == 0 {
			held := fmt.Sprintf("%d of %d tests passed", len(results), len(results))
			if unsigned > 0 {
				held += fmt.Sprintf(" (%d unsigned results not counted)", unsigned)
			}
			d.Held = append(d.Held, held)
		}
	}
	// The quorum for stable.
	if len(s.cfg.Promotion.Stable) > 0 {
		ok := true
		for _, e := range es {
			sub, envs, err := attestations(ctx, q, e.Path)
			if err != nil {
				return nil, err
			}
			j := trust.Judge(s.cfg.Promotion.Stable, trust.Candidate{Subject: sub, Attr: k.attr}, envs, now)
			for _, v := range j.Violations() {
				ok = false
				d.Excuses = append(d.Excuses, "quorum: "+v.Path+": "+v.Message)
			}
		}
		if ok {
			d.Held = append(d.Held, "the quorum for stable holds")
		}
	}
	return d, nil
}

// span says how long of how long, in days when the rule is in days.
func span(in, after time.Duration) string {
	if after%(24*time.Hour) == 0 && after > 0 {
		return fmt.Sprintf("%d days of %d", int64(in/(24*time.Hour)), int64(after/(24*time.Hour)))
	}
	return fmt.Sprintf("%s of %s", in.Truncate(time.Minute), after)
}

func attestations(ctx context.Context, q querier, path string) (trust.Subject, [][]byte, error) {
	var sub trust.Subject
	var js string
	if err := q.QueryRowContext(ctx, `SELECT subject FROM paths WHERE path = ?`, path).Scan(&js); err != nil {
		return sub, nil, fmt.Errorf("server database: %s: %w", path, err)
	}
	if err := json.Unmarshal([]byte(js), &sub); err != nil {
		return sub, nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT envelope FROM envelopes WHERE path = ? ORDER BY digest`, path)
	if err != nil {
		return sub, nil, err
	}
	defer rows.Close()
	var envs [][]byte
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return sub, nil, err
		}
		envs = append(envs, []byte(e))
	}
	return sub, envs, rows.Err()
}

// Evaluate judges every package version in testing (the timer and every
// event call it), records each decision with its excuses, and promotes
// those for which every rule holds. It returns the decisions.
func (s *Server) Evaluate(ctx context.Context) ([]*Decision, error) {
	var out []*Decision
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = nil
		_, testing, err := content(ctx, tx, channel.Testing)
		if err != nil {
			return err
		}
		keys, m := group(testing)
		now := s.clock.Now()
		for _, k := range keys {
			d, err := s.judge(ctx, tx, k, m[k], now)
			if err != nil {
				return err
			}
			if len(d.Excuses) == 0 {
				if err := s.promote(ctx, tx, k, "server", d.Held); err != nil {
					return err
				}
				d.Promoted = true
			}
			if err := recordDecision(tx, d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// afterEvent evaluates the rules after an event that is already
// committed: an error says the evaluation failed, not the event (the
// timer evaluates again).
func (s *Server) afterEvent(ctx context.Context) error {
	if _, err := s.Evaluate(ctx); err != nil {
		return fmt.Errorf("done; evaluating the promotion rules after it: %w", err)
	}
	return nil
}

func recordDecision(tx *sql.Tx, d *Decision) error {
	if _, err := tx.Exec(`DELETE FROM decisions WHERE attr = ? AND version = ?`, d.Attr, d.Version); err != nil {
		return err
	}
	if d.Promoted {
		return nil
	}
	b, _ := json.Marshal(d.Excuses)
	_, err := tx.Exec(`INSERT INTO decisions(attr, version, at, excuses) VALUES (?, ?, ?, ?)`, d.Attr, d.Version, unix(d.At), string(b))
	return err
}

// promote moves k from testing to stable in tx; the stable versions of
// the same attribute it replaces move to deprecated. One new version of
// each channel changed, one snapshot, one timestamp.
func (s *Server) promote(ctx context.Context, tx *sql.Tx, k pkgKey, who string, reasons []string) error {
	now := s.clock.Now().UTC().Truncate(time.Second)
	_, testing, err := content(ctx, tx, channel.Testing)
	if err != nil {
		return err
	}
	_, stable, err := content(ctx, tx, channel.Stable)
	if err != nil {
		return err
	}
	_, deprecated, err := content(ctx, tx, channel.Deprecated)
	if err != nil {
		return err
	}
	var newTesting, newStable []channel.Entry
	var moved, replaced int
	for _, e := range testing {
		if e.Attr == k.attr && e.Version == k.version {
			e.Since = now
			newStable = append(newStable, e)
			moved++
			continue
		}
		newTesting = append(newTesting, e)
	}
	if moved == 0 {
		return &RefusedError{What: "promoting " + k.attr + " " + k.version, Reasons: []string{"it is not in testing"}}
	}
	changes := map[string][]channel.Entry{channel.Testing: newTesting}
	var gone []string
	for _, e := range stable {
		if e.Attr == k.attr && e.Version != k.version {
			e.Since = now
			deprecated = append(deprecated, e)
			replaced++
			if !slices.Contains(gone, e.Version) {
				gone = append(gone, e.Version)
			}
			continue
		}
		newStable = append(newStable, e)
	}
	changes[channel.Stable] = newStable
	if replaced > 0 {
		changes[channel.Deprecated] = deprecated
	}
	if err := s.step("promote:decided"); err != nil {
		return err
	}
	reason := "promoted " + k.attr + " " + k.version
	if err := s.move(ctx, tx, changes, who, reason); err != nil {
		return err
	}
	if err := history(tx, k, channel.Testing, channel.Stable, now, who, reasons); err != nil {
		return err
	}
	slices.Sort(gone)
	for _, v := range gone {
		if err := history(tx, pkgKey{k.attr, v}, channel.Stable, channel.Deprecated, now, who, []string{"replaced by " + k.version}); err != nil {
			return err
		}
	}
	return s.audit(tx, who, "promote", k.attr+" "+k.version, "ok", strings.Join(reasons, "; "))
}

func history(tx *sql.Tx, k pkgKey, from, to string, at time.Time, who string, reasons []string) error {
	id, err := nextID(tx, "promotions")
	if err != nil {
		return err
	}
	b, _ := json.Marshal(reasons)
	_, err = tx.Exec(`INSERT INTO promotions(id, attr, version, from_channel, to_channel, at, who, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		id, k.attr, k.version, from, to, unix(at), who, string(b))
	return err
}

// Promote promotes a package version by hand, as who, where the rules
// allow: every rule must hold now (the timer would promote it at its
// next tick); otherwise it is refused with the excuses.
func (s *Server) Promote(ctx context.Context, who, attr, version, reason string) (*Decision, error) {
	var d *Decision
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, testing, err := content(ctx, tx, channel.Testing)
		if err != nil {
			return err
		}
		k := pkgKey{attr, version}
		_, m := group(testing)
		es, ok := m[k]
		if !ok {
			return &RefusedError{What: "promoting " + attr + " " + version, Reasons: []string{"it is not in testing"}}
		}
		if d, err = s.judge(ctx, tx, k, es, s.clock.Now()); err != nil {
			return err
		}
		if len(d.Excuses) > 0 {
			return &RefusedError{What: "promoting " + attr + " " + version, Reasons: d.Excuses}
		}
		held := d.Held
		if reason != "" {
			held = append(held, "by hand: "+reason)
		}
		if err := s.promote(ctx, tx, k, who, held); err != nil {
			return err
		}
		d.Promoted = true
		return recordDecision(tx, d)
	})
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			s.audit(nil, who, "promote", attr+" "+version, "refused", err.Error())
		}
		return nil, err
	}
	return d, nil
}

// Rollback re-publishes channel ch's previous content (the content
// before its current one) as a new, higher version, as who. Rolling
// stable back takes the entries that come back out of deprecated; the
// entries it drops are in no channel any more (their history stays).
func (s *Server) Rollback(ctx context.Context, who, ch, reason string) (int64, error) {
	if !channel.Valid(ch) {
		return 0, fmt.Errorf("rollback: %q is not a channel (%s)", ch, strings.Join(channel.Names, ", "))
	}
	var version int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, es, err := content(ctx, tx, ch)
		if err != nil {
			return err
		}
		curJSON, _ := json.Marshal(es)
		rows, err := tx.QueryContext(ctx, `SELECT version, content FROM channel_versions WHERE channel = ? AND version < ? ORDER BY version DESC`, ch, cur)
		if err != nil {
			return err
		}
		var prev []channel.Entry
		var from int64
		for rows.Next() {
			var v int64
			var c string
			if err := rows.Scan(&v, &c); err != nil {
				rows.Close()
				return err
			}
			var pes []channel.Entry
			if err := json.Unmarshal([]byte(c), &pes); err != nil {
				rows.Close()
				return err
			}
			if b, _ := json.Marshal(pes); string(b) != string(curJSON) {
				prev, from = pes, v
				break
			}
		}
		rows.Close()
		if from == 0 {
			return &RefusedError{What: "rolling back " + ch, Reasons: []string{"it has had no other content"}}
		}
		// An entry that moved on to another channel since stays there:
		// a path is in one channel at a time. Rolling stable back takes
		// back what its replacement deprecated.
		elsewhere := map[string]bool{}
		for _, other := range channel.Names {
			if other == ch || ch == channel.Stable && other == channel.Deprecated {
				continue
			}
			_, es, err := content(ctx, tx, other)
			if err != nil {
				return err
			}
			for _, e := range es {
				elsewhere[e.Path] = true
			}
		}
		prev = slices.DeleteFunc(prev, func(e channel.Entry) bool { return elsewhere[e.Path] })
		changes := map[string][]channel.Entry{ch: prev}
		if ch == channel.Stable {
			back := map[string]bool{}
			for _, e := range prev {
				back[e.Path] = true
			}
			_, dep, err := content(ctx, tx, channel.Deprecated)
			if err != nil {
				return err
			}
			var keep []channel.Entry
			for _, e := range dep {
				if !back[e.Path] {
					keep = append(keep, e)
				}
			}
			if len(keep) != len(dep) {
				changes[channel.Deprecated] = keep
			}
		}
		why := fmt.Sprintf("rolled back to the content of version %d", from)
		if reason != "" {
			why += ": " + reason
		}
		if err := s.move(ctx, tx, changes, who, why); err != nil {
			return err
		}
		version, _, err = content(ctx, tx, ch)
		if err != nil {
			return err
		}
		if err := history(tx, pkgKey{"", ""}, ch, ch, s.clock.Now(), who, []string{why}); err != nil {
			return err
		}
		return s.audit(tx, who, "rollback", ch, "ok", why)
	})
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			s.audit(nil, who, "rollback", ch, "refused", err.Error())
		}
		return 0, err
	}
	return version, nil
}

// ChannelView is one channel as the API shows it.
type ChannelView struct {
	Name    string          `json:"name"`
	Version int64           `json:"version"`
	Entries []channel.Entry `json:"entries"`
	// Waiting, for testing: each package version's last decision.
	Waiting []*Decision `json:"waiting,omitempty"`
}

// Channels returns every channel, with the excuses of what waits in
// testing.
func (s *Server) Channels(ctx context.Context) ([]ChannelView, error) {
	// One read transaction: a promotion is seen whole or not at all.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var out []ChannelView
	for _, ch := range channel.Names {
		v, es, err := content(ctx, tx, ch)
		if err != nil {
			return nil, err
		}
		if es == nil {
			es = []channel.Entry{}
		}
		cv := ChannelView{Name: ch, Version: v, Entries: es}
		if ch == channel.Testing {
			rows, err := tx.QueryContext(ctx, `SELECT attr, version, at, excuses FROM decisions ORDER BY attr, version`)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				d := &Decision{}
				var at int64
				var ex string
				if err := rows.Scan(&d.Attr, &d.Version, &at, &ex); err != nil {
					rows.Close()
					return nil, err
				}
				d.At = fromUnix(at)
				json.Unmarshal([]byte(ex), &d.Excuses)
				cv.Waiting = append(cv.Waiting, d)
			}
			rows.Close()
		}
		out = append(out, cv)
	}
	return out, nil
}

// HistoryEntry is one promotion, deprecation or rollback.
type HistoryEntry struct {
	Attr    string    `json:"attr,omitempty"`
	Version string    `json:"version,omitempty"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	At      time.Time `json:"at"`
	Who     string    `json:"who"`
	Reasons []string  `json:"reasons"`
}

// History returns the promotions, deprecations and rollbacks, oldest first.
func (s *Server) History(ctx context.Context) ([]HistoryEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT attr, version, from_channel, to_channel, at, who, reasons FROM promotions ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []HistoryEntry
	for rows.Next() {
		var h HistoryEntry
		var at int64
		var rs string
		if err := rows.Scan(&h.Attr, &h.Version, &h.From, &h.To, &at, &h.Who, &rs); err != nil {
			return nil, err
		}
		h.At = fromUnix(at)
		json.Unmarshal([]byte(rs), &h.Reasons)
		out = append(out, h)
	}
	return out, rows.Err()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
