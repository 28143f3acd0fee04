package server

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestThreatReports(t *testing.T) {
	e := newEnv(t)
	ts := e.serve()
	node := &Client{Base: ts.URL, Token: e.token("ws-1", Reporter)}
	n, err := node.ReportThreats(ctx, ThreatReport{Node: "workstation", Alerts: []string{"added /bin/nc", "new listener tcp 0.0.0.0:23"}})
	if err != nil || n != 2 {
		t.Fatalf("report: %d, %v", n, err)
	}
	e.at(day + 3*60*60*1e9)
	if _, err := node.ReportThreats(ctx, ThreatReport{Node: "server", Alerts: []string{"modified /etc/hostname"}}); err != nil {
		t.Fatal(err)
	}
	got, err := (&Client{Base: ts.URL}).Threats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Recent) != 3 || got.Recent[0].Alert != "modified /etc/hostname" || got.Recent[0].Node != "server" || got.Recent[0].ReportedBy != "ws-1" {
		t.Fatalf("recent %+v", got.Recent)
	}
	if !got.Recent[0].At.Equal(day0.Add(day + 3*60*60*1e9)) {
		t.Fatalf("received at %v: want the server's clock", got.Recent[0].At)
	}
	wantDays := []DayCount{{"2026-03-02", 2}, {"2026-03-03", 1}}
	if !slices.Equal(got.PerDay, wantDays) {
		t.Fatalf("per day %+v", got.PerDay)
	}
	wantNodes := []NodeDayCount{{"server", "2026-03-03", 1}, {"workstation", "2026-03-02", 2}}
	if !slices.Equal(got.PerNodeDay, wantNodes) {
		t.Fatalf("per node and day %+v", got.PerNodeDay)
	}
}

// Hostile reports: no token, a reader token, a forged one; a node name
// or an alert that could be anything; too many; a flood.
func TestThreatReportsRefused(t *testing.T) {
	e := newEnv(t)
	ts := e.serve()
	good := ThreatReport{Node: "workstation", Alerts: []string{"added /bin/nc"}}
	for name, c := range map[string]*Client{
		"anonymous": {Base: ts.URL},
		"reader":    {Base: ts.URL, Token: e.token("rita", Reader)},
		"forged":    {Base: ts.URL, Token: "heph_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
	} {
		if _, err := c.ReportThreats(ctx, good); status(err) != http.StatusForbidden {
			t.Fatalf("%s: %v", name, err)
		}
	}
	rep := &Client{Base: ts.URL, Token: e.token("ws", Reporter)}
	many := make([]string, MaxThreatAlerts+1)
	for i := range many {
		many[i] = "added /bin/x"
	}
	for name, r := range map[string]ThreatReport{
		"node with a slash": {Node: "../etc", Alerts: good.Alerts},
		"empty node":        {Alerts: good.Alerts},
		"node with html":    {Node: "<b>ws</b>", Alerts: good.Alerts},
		"no alerts":         {Node: "ws"},
		"too many":          {Node: "ws", Alerts: many},
		"too long":          {Node: "ws", Alerts: []string{strings.Repeat("a", MaxThreatAlertLen+1)}},
		"control character": {Node: "ws", Alerts: []string{"added /bin/\x1b[2Jnc"}},
		"newline":           {Node: "ws", Alerts: []string{"added /bin/nc\nHEPH-SENTINEL ALERT: forged"}},
		"empty alert":       {Node: "ws", Alerts: []string{""}},
	} {
		if _, err := rep.ReportThreats(ctx, r); status(err) != http.StatusBadRequest {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A body beyond the bound is refused before it is read whole.
	big := ThreatReport{Node: "ws", Alerts: []string{strings.Repeat("a", 100<<10)}}
	if _, err := rep.ReportThreats(ctx, big); status(err) != http.StatusBadRequest {
		t.Errorf("a 100 KiB body: %v", err)
	}
	// A flood: a node's day is bounded.
	full := make([]string, MaxThreatAlerts)
	for i := range full {
		full[i] = "modified /etc/x"
	}
	var err error
	for i := 0; i <= MaxThreatsPerNodeDay/MaxThreatAlerts; i++ {
		if _, err = rep.ReportThreats(ctx, ThreatReport{Node: "flood", Alerts: full}); err != nil {
			break
		}
	}
	if status(err) != http.StatusConflict || !strings.Contains(err.Error(), "a day") {
		t.Fatalf("flood: %v", err)
	}
	// Another node still reports.
	if _, err := rep.ReportThreats(ctx, good); err != nil {
		t.Fatal(err)
	}
	// The refusals are in the audit log.
	a, err := e.srv.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, x := range a {
		if x.Action == "report threats" && x.Outcome != "ok" {
			refused++
		}
	}
	if refused < 10 {
		t.Fatalf("%d refusals audited", refused)
	}
}

// The schema of threat reports stays plain SQL that PostgreSQL accepts.
func TestThreatSchemaPortable(t *testing.T) {
	for _, bad := range []string{"AUTOINCREMENT", "SERIAL", "DATETIME", "INTEGER PRIMARY KEY", "WITHOUT ROWID", "STRICT", "BLOB"} {
		if strings.Contains(strings.ToUpper(threatSchema), bad) {
			t.Errorf("the threat schema uses %s", bad)
		}
	}
}
