package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/internal/pathtest"
)

// TestServeCertificateFromConfig: server.tls names the certificate.
// serve init prints its fingerprint (and makes none), serve serves it
// and a client pinning it is answered; from: "data", the same with the
// files in the data directory. A key others may read, the key of
// another certificate and an expired certificate are refused at
// server:'s position; a client pinning another certificate is refused.
func TestServeCertificateFromConfig(t *testing.T) {
	st := pathtest.NewStore(t).Dir
	f := newServeFixture(t, st)
	dir, cli := f.dir, f.cli
	config := func(name, tls string) { f.write(name+"/system.cue", "\ttls: {"+tls+"}\n", "") }
	// cert makes a certificate and key in dir/sub (tls.crt, tls.key).
	cert := func(sub string, now time.Time) string {
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		fp, err := writeCertificate(d, []string{"127.0.0.1"}, now)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	check := func(name, data, want string) {
		t.Helper()
		out, _ := cli.must(st, "serve", "init", "--data", data, "--offline-dir", data+"-keys", name+"/system.cue")
		if !strings.Contains(out, "certificate: \""+want+"\"") {
			t.Fatalf("serve init printed %q, want the certificate %s", out, want)
		}
		if _, err := os.Stat(filepath.Join(dir, data, certFile)); err == nil {
			t.Errorf("serve init made %s although server.tls names one", certFile)
		}
		url := serve(t, dir, "", "--data", filepath.Join(dir, data), name+"/system.cue")
		cli.must(st, "channels", "--server", url, "--certificate", want)
		cli.refused(st, "not the one pinned (sha256:"+strings.Repeat("0", 64)+")", "channels", "--server", url, "--certificate", "sha256:"+strings.Repeat("0", 64))
		stopServer(t)
	}

	// In the configuration's directory.
	fp := cert("own/certs", time.Now())
	config("own", `certificate: "certs/tls.crt", key: "certs/tls.key"`)
	check("own", "data-own", fp)

	// In the data directory.
	fp = cert("data-in/pki", time.Now())
	config("in", `certificate: "pki/tls.crt", key: "pki/tls.key", from: "data"`)
	check("in", "data-in", fp)

	// Refused: a key others may read, another certificate's key, an
	// expired certificate.
	os.Chmod(filepath.Join(dir, "own/certs/tls.key"), 0o644)
	cli.refused(st, "own/system.cue:5:1: server: tls.key: "+filepath.Join(dir, "own/certs/tls.key")+" may be read by others (mode 0644): chmod 600 it",
		"serve", "--data", filepath.Join(dir, "data-own"), "own/system.cue")
	cert("other", time.Now())
	config("mixed", `certificate: "../own/certs/tls.crt", key: "../other/tls.key"`)
	t.Logf("a path out of the directory: %s", lastLine(cli.refused(st, "mixed/system.cue:", "serve", "init", "--data", "data-mixed", "mixed/system.cue")))
	config("mixed", `certificate: "certs/tls.crt", key: "certs/tls.key"`)
	os.Rename(filepath.Join(dir, "other"), filepath.Join(dir, "mixed/certs"))
	os.Rename(filepath.Join(dir, "own/certs/tls.crt"), filepath.Join(dir, "mixed/certs/tls.crt"))
	cli.refused(st, "private key does not match public key", "serve", "init", "--data", "data-mixed", "mixed/system.cue")
	if _, err := os.Stat(filepath.Join(dir, "server-root-keys")); err == nil {
		t.Error("serve init made root keys although its certificate was refused")
	}
	cert("old/certs", time.Now().Add(-3*365*24*time.Hour))
	config("old", `certificate: "certs/tls.crt", key: "certs/tls.key"`)
	cli.refused(st, "tls.certificate: "+filepath.Join(dir, "old/certs/tls.crt")+" is valid from", "serve", "init", "--data", "data-old", "old/system.cue")
	if _, err := os.Stat(filepath.Join(dir, "data-old", "server.sqlite")); err == nil {
		t.Error("serve init made a server although its certificate was refused")
	}
}
