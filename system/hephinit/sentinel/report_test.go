package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const testToken = "heph_TESTTOKENtesttokenTESTTOKENtesttokenTEST"

func TestBootToken(t *testing.T) {
	dir := t.TempDir()
	fw, cmd := filepath.Join(dir, "raw"), filepath.Join(dir, "cmdline")
	os.WriteFile(cmd, []byte("console=ttyS0 heph.reporter_token=heph_fromcmdline quiet\n"), 0o644)
	if tok, from := bootToken(fw, cmd); tok != "heph_fromcmdline" || from != "the kernel command line" {
		t.Fatalf("%q from %q", tok, from)
	}
	os.WriteFile(fw, []byte("heph_fromfwcfg\n"), 0o644)
	if tok, from := bootToken(fw, cmd); tok != "heph_fromfwcfg" || from != "QEMU's fw_cfg" {
		t.Fatalf("%q from %q", tok, from)
	}
	if tok, _ := bootToken(filepath.Join(dir, "none"), filepath.Join(dir, "none")); tok != "" {
		t.Fatalf("token %q from nothing", tok)
	}
	// The dashed spelling is the same parameter, as for the kernel.
	if p := bootParams("heph.reporter-token=x heph.server=https://h:1"); p["heph.reporter_token"] != "x" || p["heph.server"] != "https://h:1" {
		t.Fatalf("%v", p)
	}
}

// plantAfterBaseline is the sentinel's output; it calls plant once, when
// the sentinel says it has taken its baseline.
type plantAfterBaseline struct {
	bytes.Buffer
	plant   func()
	planted bool
}

func (w *plantAfterBaseline) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if !w.planted && strings.Contains(w.Buffer.String(), "HEPH-SENTINEL: watching") {
		w.planted = true
		w.plant()
	}
	return n, err
}

type fakeServer struct {
	mu      sync.Mutex
	auth    []string
	reports []map[string]any
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.reports = append(f.reports, body)
	f.mu.Unlock()
	fmt.Fprintln(w, `{"kept": 1}`)
}

func pin(ts *httptest.Server) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(ts.Certificate().Raw))
}

// The sentinel reports a planted file to the pinned server with the
// token from the kernel command line, and never prints the token.
func TestRunReportsToServer(t *testing.T) {
	fs := &fakeServer{}
	ts := httptest.NewTLSServer(fs)
	defer ts.Close()
	dir, watch := t.TempDir(), t.TempDir()
	cmd := filepath.Join(dir, "cmdline")
	os.WriteFile(cmd, []byte("console=ttyS0 heph.reporter_token="+testToken+" heph.server="+ts.URL+" heph.server_cert="+pin(ts)), 0o644)
	// The file is planted as the baseline is announced, so the next look
	// finds it however slowly this machine runs (no sleep to race).
	var errOut bytes.Buffer
	out := &plantAfterBaseline{plant: func() {
		os.WriteFile(filepath.Join(watch, "nc"), []byte("x"), 0o755)
	}}
	code := run([]string{"-watch", watch, "-proc", dir, "-interval", "50ms", "-rounds", "8", "-cmdline", cmd,
		"-fw-cfg", filepath.Join(dir, "none"), "-node", "workstation", "-server", "https://configured.example:1"}, out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.reports) != 1 || fs.auth[0] != "Bearer "+testToken {
		t.Fatalf("reports %v (auth %v)\n%s", fs.reports, fs.auth, out.String())
	}
	r := fs.reports[0]
	if r["node"] != "workstation" || fmt.Sprint(r["alerts"]) != "[added "+filepath.Join(watch, "nc")+"]" {
		t.Fatalf("report %v", r)
	}
	if !strings.Contains(out.String(), "HEPH-SENTINEL: reporting to "+ts.URL+" as workstation (token from the kernel command line)") ||
		!strings.Contains(out.String(), "reported 1 alerts") {
		t.Fatalf("output:\n%s", out.String())
	}
	if strings.Contains(out.String()+errOut.String(), testToken) {
		t.Fatal("the token was printed")
	}
}

// A server whose certificate is not the pinned one never sees the
// token; the alerts wait for the next look.
func TestReportRefusesAnotherCertificate(t *testing.T) {
	fs := &fakeServer{}
	ts := httptest.NewTLSServer(fs)
	defer ts.Close()
	// httptest's servers share one certificate: another pin stands for
	// another server's.
	var log bytes.Buffer
	r, err := newReporter(ts.URL, "sha256:"+strings.Repeat("ab", 32), "ws", testToken, &log)
	if err != nil {
		t.Fatal(err)
	}
	r.report([]string{"added /bin/nc"})
	r.report([]string{"added /bin/sh2"})
	if len(fs.reports) != 0 || len(r.pending) != 2 {
		t.Fatalf("reports %v, pending %v", fs.reports, r.pending)
	}
	if got := log.String(); strings.Count(got, "cannot report") != 1 || !strings.Contains(got, "not the pinned") || strings.Contains(got, testToken) {
		t.Fatalf("log:\n%s", got)
	}
	// Unpinned and self-signed: the system's roots refuse it too.
	r, _ = newReporter(ts.URL, "", "ws", testToken, &log)
	r.report([]string{"added /bin/nc"})
	if len(fs.reports) != 0 {
		t.Fatal("reported to an unverified server")
	}
	// Plain HTTP is refused outright.
	if _, err := newReporter("http://h:1", "", "ws", testToken, &log); err == nil {
		t.Fatal("http accepted")
	}
}

func TestCleanAlert(t *testing.T) {
	for in, want := range map[string]string{
		"added /bin/nc":                  "added /bin/nc",
		"added /bin/a\nHEPH-SELFTEST OK": `added /bin/a\x0aHEPH-SELFTEST OK`,
		"added /bin/\xff\x1b[2J":         `added /bin/\xff\x1b[2J`,
		`added /bin/a\x0a`:               `added /bin/a\x5cx0a`,
		"added /bin/é":                   "added /bin/é",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
	if got := clean(strings.Repeat("é", 400)); len(got) > maxAlert || !strings.HasSuffix(got, "…") {
		t.Errorf("long: %d bytes", len(got))
	}
}
