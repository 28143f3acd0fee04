package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Reporting to the package server (issue 19). The image's configuration
// gives the server's address and its certificate's fingerprint (-server,
// -server-cert); the reporter token is never in the image: it is handed
// over at boot and read from
//
//	/sys/firmware/qemu_fw_cfg/by_name/opt/heph/reporter-token/raw
//	    (QEMU's -fw_cfg name=opt/heph/reporter-token,file=F, where the
//	    kernel has CONFIG_FW_CFG_SYSFS)
//	heph.reporter_token=TOKEN on the kernel command line (/proc/cmdline)
//	    (hephc boot --reporter-token-file F; the gokrazy kernel heph
//	    pins has no CONFIG_FW_CFG_SYSFS)
//
// The command line may also name the server for this boot
// (heph.server=URL heph.server_cert=sha256:HEX). Without a server or a
// token the alerts stay on the console. The token is never printed.

const (
	fwCfgToken = "/sys/firmware/qemu_fw_cfg/by_name/opt/heph/reporter-token/raw"
	// maxPending bounds the alerts kept while the server is unreachable
	// (the oldest are dropped).
	maxPending = 1024
	// batch is how many alerts one report carries (the server's bound).
	batch = 64
	// maxAlert is the longest alert the server takes, in bytes.
	maxAlert = 512
)

// bootParams reads name=value parameters of the kernel command line.
func bootParams(cmdline string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "heph.") {
			out[strings.ReplaceAll(k, "-", "_")] = v
		}
	}
	return out
}

// bootToken returns the reporter token handed over at boot and where it
// came from.
func bootToken(fwcfg, cmdline string) (tok, from string) {
	if b, err := os.ReadFile(fwcfg); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, "QEMU's fw_cfg"
		}
	}
	if b, err := os.ReadFile(cmdline); err == nil {
		if t := bootParams(string(b))["heph.reporter_token"]; t != "" {
			return t, "the kernel command line"
		}
	}
	return "", ""
}

// reporter posts alerts to the server's POST /api/v1/threats.
type reporter struct {
	url     string
	node    string
	token   string
	client  *http.Client
	pending []string
	dropped int
	lastErr string
	log     io.Writer
}

// newReporter makes a reporter to server whose TLS certificate, when pin
// ("sha256:HEX" of its DER) is given, must be exactly that one (the
// server's is self-signed); otherwise the system's roots verify it.
func newReporter(server, pin, node, token string, log io.Writer) (*reporter, error) {
	if !strings.HasPrefix(server, "https://") {
		return nil, fmt.Errorf("-server %q: want https://HOST:PORT (the token never crosses the network in the clear)", server)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if pin != "" {
		want, ok := strings.CutPrefix(pin, "sha256:")
		if b, err := hex.DecodeString(want); !ok || err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("-server-cert %q: want sha256:<64 hex digits>", pin)
		}
		// The pinned certificate is the only one accepted: checked
		// before the request, so the token goes to no one else.
		tc.InsecureSkipVerify = true
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the server gave no certificate")
			}
			got := sha256.Sum256(raw[0])
			if hex.EncodeToString(got[:]) != want {
				return fmt.Errorf("the server's certificate is sha256:%x, not the pinned %s", got, pin)
			}
			return nil
		}
	}
	return &reporter{url: strings.TrimSuffix(server, "/") + "/api/v1/threats", node: node, token: token, log: log,
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// report queues alerts and posts what is queued; what the server could
// not be reached for waits for the next look.
func (r *reporter) report(alerts []string) {
	r.pending = append(r.pending, alerts...)
	if n := len(r.pending) - maxPending; n > 0 {
		r.pending = r.pending[n:]
		r.dropped += n
	}
	for len(r.pending) > 0 {
		n := min(batch, len(r.pending))
		status, err := r.post(r.pending[:n])
		switch {
		case err != nil:
			r.fail(err.Error())
			return
		case status == http.StatusOK:
		case status == http.StatusBadRequest:
			// Never accepted: dropped, said once.
			r.fail(fmt.Sprintf("the server refused %d alerts as malformed (HTTP 400): dropped", n))
		default:
			r.fail(fmt.Sprintf("the server answered HTTP %d", status))
			return
		}
		r.pending = r.pending[n:]
		if status == http.StatusOK {
			if r.lastErr != "" {
				fmt.Fprintf(r.log, "HEPH-SENTINEL: reporting to the server again\n")
				r.lastErr = ""
			}
			fmt.Fprintf(r.log, "HEPH-SENTINEL: reported %d alerts to the server\n", n)
		}
	}
}

// fail says why reporting failed, once until it changes.
func (r *reporter) fail(msg string) {
	if msg != r.lastErr {
		fmt.Fprintf(r.log, "HEPH-SENTINEL: cannot report: %s\n", msg)
		r.lastErr = msg
	}
}

func (r *reporter) post(alerts []string) (int, error) {
	body, err := json.Marshal(map[string]any{"node": r.node, "alerts": alerts})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		// The error names the URL, never the token.
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}

// clean makes an alert one printable line the server accepts: a file
// name may hold anything, even a newline that would forge a console
// line.
func clean(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r) || r == '\\':
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
		i += n
	}
	out := b.String()
	if len(out) > maxAlert {
		cut := maxAlert - len("…")
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + "…"
	}
	return out
}

// hostname is the node's name: /etc/hostname's first line.
func hostname(etc string) string {
	b, err := os.ReadFile(etc)
	if err != nil {
		return "unknown"
	}
	if h := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]); h != "" {
		return h
	}
	return "unknown"
}
