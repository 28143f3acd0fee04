package server

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"hephc.dev/hephc/trust"
)

func get(t *testing.T, c *http.Client, u string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// pageEnv is a server with age 1.0 in stable, age 1.1 waiting in testing
// with an open issue, tests, and a threat report.
func pageEnv(t *testing.T) *env {
	e := newEnv(t)
	age := e.add("age", "v1")
	e.tests.set("age 1.0", TestResult{Name: "go-test-age", Passed: true})
	if err := e.publish("age", "1.0", age); err != nil {
		t.Fatal(err)
	}
	e.at(8 * day)
	if d := e.evaluate("age", "1.0"); !d.Promoted {
		t.Fatalf("not promoted: %v", d.Excuses)
	}
	age2 := e.add("age", "v2")
	e.tests.set("age 1.1", TestResult{Name: "go-test-age", Passed: false, Detail: "failed: TestX"})
	if err := e.publish("age", "1.1", age2, e.sign(age2, trust.Built, "alice"), e.sign(age2, trust.Reproduced, "bob")); err == nil {
		t.Fatal("published with a failed test")
	}
	e.tests.set("age 1.1", TestResult{Name: "go-test-age", Passed: true})
	if err := e.publish("age", "1.1", age2, e.sign(age2, trust.Built, "alice"), e.sign(age2, trust.Reproduced, "bob")); err != nil {
		t.Fatal(err)
	}
	e.at(10 * day)
	if _, err := e.srv.OpenIssue(ctx, "rita", "age", "1.1", "age-keygen <script>alert(1)</script> crashes"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.ReportThreats(ctx, "ws-token", ThreatReport{Node: "workstation", Alerts: []string{"added /bin/nc", "added /bin/<img src=x>"}}); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPageShowsState(t *testing.T) {
	e := pageEnv(t)
	ts := e.serve()
	tok := e.token("rita-reader", Reader)
	code, body := get(t, http.DefaultClient, ts.URL+"/", "Authorization", "Bearer "+tok)
	if code != 200 {
		t.Fatalf("%d\n%s", code, body)
	}
	for _, want := range []string{
		`<caption>stable (version 2): 1 package</caption>`,
		`<caption>testing (version 4): 1 package</caption>`,
		`<th scope="row">age</th><td>1.0</td>`,
		// Days in testing, and the day it may be promoted (day 8 + 7).
		`<td>2</td><td><time datetime="2026-03-17T09:00:00Z">2026-03-17</time></td>`,
		"<li>in testing 2 days of 7</li>",
		"<li>issue #1 open: age-keygen &lt;script&gt;alert(1)&lt;/script&gt; crashes</li>",
		`<th scope="row">go-test-age</th><td>passed</td>`,
		"<td>built</td><td>alice</td>",
		"<td>reproduced</td><td>bob</td>",
		"<td>reproduced</td><td>carol</td>",
		`<th scope="row">2026-03-12</th><td>workstation</td><td>2</td>`,
		"<code>added /bin/nc</code>",
		"<code>added /bin/&lt;img src=x&gt;</code>",
		"Signed in as <strong>rita-reader</strong>",
		`<main id="main">`, `<nav aria-label="Sections">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "<img src=x>") {
		t.Fatal("the page holds markup a reporter wrote")
	}
}

func TestPageNeedsAReaderToken(t *testing.T) {
	e := pageEnv(t)
	ts := e.serve()
	tok := e.token("rita-reader", Reader)
	// Anonymous: the login form, no data.
	code, body := get(t, http.DefaultClient, ts.URL+"/")
	if code != http.StatusUnauthorized || strings.Contains(body, "1.0") || !strings.Contains(body, `<label for="token">Token</label>`) {
		t.Fatalf("anonymous: %d\n%s", code, body)
	}
	if code, body := get(t, http.DefaultClient, ts.URL+"/", "Authorization", "Bearer heph_forged"); code != http.StatusUnauthorized || strings.Contains(body, "1.0") {
		t.Fatalf("forged: %d", code)
	}
	// A token in the URL is refused, even a good one, and never read.
	for _, u := range []string{"/?token=" + tok, "/?access_token=" + tok, "/?t=" + tok, "/login?token=x"} {
		if code, body := get(t, http.DefaultClient, ts.URL+u); code != http.StatusBadRequest || strings.Contains(body, "1.0") {
			t.Fatalf("%s: %d", u, code)
		}
	}
	// The login form sets a cookie; the page reads it.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(ts.URL+"/login", url.Values{"token": {"heph_forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged login: %d", resp.StatusCode)
	}
	resp, err = c.PostForm(ts.URL+"/login", url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "rita-reader") {
		t.Fatalf("login: %d\n%s", resp.StatusCode, b)
	}
	u, _ := url.Parse(ts.URL)
	cs := jar.Cookies(u)
	if len(cs) != 1 || cs[0].Name != sessionCookie {
		t.Fatalf("cookies %v", cs)
	}
	// The page's cookie authorizes no API call: a write with the
	// maintainer's cookie is still anonymous.
	maint := e.token("mia", Maintainer)
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/promote", strings.NewReader(`{"attr":"age","version":"1.1","reason":"x"}`))
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: maint})
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("promote with a cookie: %d", resp.StatusCode)
	}
	// A login posted from another site is refused.
	req, _ = http.NewRequest("POST", ts.URL+"/login", strings.NewReader("token="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("cross-site login: %d %v", resp.StatusCode, resp.Cookies())
	}
	// The headers forbid scripts, frames and other origins.
	resp, err = c.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", resp.Header)
	}
}

func TestPagePublicWhenConfigured(t *testing.T) {
	e := pageEnv(t)
	e.srv.Close()
	e.cfg.PublicPage = true
	e.open()
	ts := e.serve()
	code, body := get(t, http.DefaultClient, ts.URL+"/")
	if code != 200 || !strings.Contains(body, "in testing 2 days of 7") || strings.Contains(body, "Signed in as") {
		t.Fatalf("%d\n%s", code, body)
	}
}
