package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// healthReport is what the self-test serves at GET /health
// (system/hephinit/selftest/monitor.go).
type healthReport struct {
	Status  string   `json:"status"`
	Runs    int      `json:"runs"`
	Failing []string `json:"failing"`
	Checks  []struct {
		Name    string  `json:"name"`
		OK      bool    `json:"ok"`
		Problem string  `json:"problem"`
		LastRun float64 `json:"last_run_s"`
	} `json:"checks"`
}

// TestHealthEndpoint boots the example workstation as a person does,
// with hephc boot --forward tcp:127.0.0.1:PORT-:9100 on a terminal: the
// self-test's /health, reached from the host, says ok (200) with every
// check; a program of the image removed at the console shell turns it
// failing (503) with that program's check named, and the console says
// so once.
func TestHealthEndpoint(t *testing.T) {
	storeDir, _, _ := systemStore(t)
	requireQEMU(t)
	workstation := imageToplevel(t, storeDir, "images.workstation")
	port := freePort(t) // serverimage_e2e_test.go
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/health"

	start := time.Now()
	con := bootOnTerminal(t, workstation, "--forward", fmt.Sprintf("tcp:127.0.0.1:%d-:9100", port))
	con.expect(t, regexp.QuoteMeta("heph: console shell on /dev/ttyS0"), 4*time.Minute)
	con.expect(t, `(?m)^\$ `, 2*time.Minute) // gosh's prompt
	con.expect(t, `(?m)^HEPH-SELFTEST OK\r?$`, 4*time.Minute)
	booted := time.Since(start)

	h := waitForHealth(t, url, http.StatusOK, func(h healthReport) bool { return h.Status == "ok" }, time.Minute)
	names := make([]string, len(h.Checks))
	for i, c := range h.Checks {
		names[i] = c.Name
		if !c.OK || c.LastRun <= 0 {
			t.Errorf("check %+v", c)
		}
	}
	for _, want := range []string{"program /bin/wireguard", "program /bin/age", "capability encrypted-containers", "service selftest", "service sentinel"} {
		if !slices.Contains(names, want) {
			t.Errorf("/health has no check %q: %q", want, names)
		}
	}

	con.send(t, "rm /bin/wireguard\r")
	// The next run (every 30s, as system.cue says) finds it.
	h = waitForHealth(t, url, http.StatusServiceUnavailable, func(h healthReport) bool { return h.Status == "failing" }, 3*time.Minute)
	if !slices.Equal(h.Failing, []string{"program /bin/wireguard"}) {
		t.Errorf("failing: %q, want the wireguard program's check alone", h.Failing)
	}
	for _, c := range h.Checks {
		if c.Name == "program /bin/wireguard" && c.Problem != "program /bin/wireguard of package wireguard: /bin/wireguard is missing" {
			t.Errorf("problem %q", c.Problem)
		}
	}
	con.expect(t, regexp.QuoteMeta("HEPH-SELFTEST FAIL: program /bin/wireguard of package wireguard: /bin/wireguard is missing"), time.Minute)
	t.Logf("booted in %v; ok then failing after %v", booted.Round(time.Second), time.Since(start).Round(time.Second))
	con.quit(t)
}

// waitForHealth polls url until it answers code with a report that
// satisfies ok, and returns that report.
func waitForHealth(t *testing.T, url string, code int, ok func(healthReport) bool, timeout time.Duration) healthReport {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			time.Sleep(time.Second)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		var h healthReport
		err = json.Unmarshal(body, &h)
		if err == nil && resp.StatusCode == code && ok(h) {
			t.Logf("GET %s: %d\n%s", url, resp.StatusCode, body)
			return h
		}
		last = fmt.Sprintf("%d %v\n%s", resp.StatusCode, err, body)
		time.Sleep(time.Second)
	}
	t.Fatalf("after %v GET %s does not answer %d as wanted; last: %s", timeout, url, code, last)
	return healthReport{}
}
