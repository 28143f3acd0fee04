package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"

	"hephc.dev/hephc/archive"
	"hephc.dev/hephc/internal/pathtest"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/server"
	"hephc.dev/hephc/store"
)

const bootTestToken = "heph_BOOTtokenBOOTtokenBOOTtokenBOOTtokenBOOTtok"

// hephc boot --reporter-token-file hands the token to the guest in a
// file QEMU reads (fw_cfg) and in a -readconfig file of mode 0600 (the
// kernel command line), never in QEMU's argv, which every user of the
// host can read, nor in what --dry-run prints.
func TestBootReporterToken(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	sys := fakeToplevel(t, dir, toplevelFiles)
	sys, _ = filepath.EvalSymlinks(sys)
	tokFile := filepath.Join(dir, "reporter,token")
	if err := os.WriteFile(tokFile, []byte(bootTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := hephcIn(dir, "boot", "--dry-run", "--reporter-token-file", "reporter,token")
	if code != 0 || strings.Contains(stdout+stderr, bootTestToken) ||
		!strings.Contains(stdout, "quiet heph.reporter_token=(from "+tokFile+")") ||
		!strings.Contains(stdout, "name=opt/heph/reporter-token,file="+dir+"/reporter,,token") {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, stderr)
	}
	cfgCopy := filepath.Join(dir, "cfg-copy")
	exe, _, argsfile := fakeQEMU(t, `prev=; for a; do [ "$prev" = -readconfig ] && cp "$a" `+cfgCopy+` && stat -c %a "$a" >`+cfgCopy+`.mode && echo "$a" >`+cfgCopy+`.path; prev=$a; done; echo BOOTED`)
	code, stdout, stderr = hephcIn(dir, "boot", "--qemu", exe, "--expect", "BOOTED", "--reporter-token-file", tokFile)
	if code != 0 {
		t.Fatalf("boot: exit %d\n%s%s", code, stdout, stderr)
	}
	args, _ := os.ReadFile(argsfile)
	if strings.Contains(string(args), bootTestToken) || strings.Contains(string(args), "-append") {
		t.Fatalf("QEMU's argv holds the command line or the token:\n%s", args)
	}
	cfg, _ := os.ReadFile(cfgCopy)
	want := "[machine]\n  append = \"console=ttyS0 panic=-1 no_timer_check quiet heph.reporter_token=" + bootTestToken + "\"\n"
	if string(cfg) != want {
		t.Fatalf("QEMU's config:\n%s\nwant\n%s", cfg, want)
	}
	if mode, _ := os.ReadFile(cfgCopy + ".mode"); strings.TrimSpace(string(mode)) != "600" {
		t.Fatalf("config mode %s", mode)
	}
	path, _ := os.ReadFile(cfgCopy + ".path")
	if _, err := os.Stat(strings.TrimSpace(string(path))); !os.IsNotExist(err) {
		t.Fatalf("the config with the token outlived QEMU: %v", err)
	}
	if !strings.Contains(string(args), "-fw_cfg\nname=opt/heph/reporter-token,file="+dir+"/reporter,,token") {
		t.Fatalf("no fw_cfg:\n%s", args)
	}
	// Not a token: refused, its content never shown.
	os.WriteFile(tokFile, []byte("hunter2-not-a-token"), 0o600)
	code, stdout, stderr = hephcIn(dir, "boot", "--dry-run", "--reporter-token-file", tokFile)
	if code == 0 || strings.Contains(stdout+stderr, "hunter2") || !strings.Contains(stderr, "not a package server token") {
		t.Fatalf("a bad token: exit %d\n%s%s", code, stdout, stderr)
	}
}

// hephc boot --admin-token-file hands a server image's hephc serve its
// admin token on the kernel command line beside the reporter token: in
// the -readconfig file of mode 0600, not in QEMU's argv, nor in what
// --dry-run prints; no fw_cfg for it.
func TestBootAdminToken(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	fakeToplevel(t, dir, toplevelFiles)
	const admin = "heph_ADMINadminADMINadminADMINadminADMINadminADM"
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "reporter.token"), []byte(bootTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := hephcIn(dir, "boot", "--dry-run", "--reporter-token-file", "reporter.token", "--admin-token-file", "admin.token")
	if code != 0 || strings.Contains(stdout+stderr, admin) ||
		!strings.Contains(stdout, "quiet heph.reporter_token=(from "+dir+"/reporter.token) heph.admin_token=(from "+dir+"/admin.token)") ||
		strings.Contains(stdout, "admin-token,file") {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, stderr)
	}
	cfgCopy := filepath.Join(dir, "cfg-copy")
	exe, _, argsfile := fakeQEMU(t, `prev=; for a; do [ "$prev" = -readconfig ] && cp "$a" `+cfgCopy+`; prev=$a; done; echo BOOTED`)
	code, stdout, stderr = hephcIn(dir, "boot", "--qemu", exe, "--expect", "BOOTED", "--admin-token-file", "admin.token")
	if code != 0 {
		t.Fatalf("boot: exit %d\n%s%s", code, stdout, stderr)
	}
	args, _ := os.ReadFile(argsfile)
	if strings.Contains(string(args), admin) || strings.Contains(string(args), "-append") || strings.Contains(string(args), "-fw_cfg") {
		t.Fatalf("QEMU's argv holds the command line, the token or a fw_cfg:\n%s", args)
	}
	cfg, _ := os.ReadFile(cfgCopy)
	want := "[machine]\n  append = \"console=ttyS0 panic=-1 no_timer_check quiet heph.admin_token=" + admin + "\"\n"
	if string(cfg) != want {
		t.Fatalf("QEMU's config:\n%s\nwant\n%s", cfg, want)
	}
	// Not a token: refused, its content never shown; and not with a disk.
	os.WriteFile(filepath.Join(dir, "admin.token"), []byte("hunter2-not-a-token"), 0o600)
	code, stdout, stderr = hephcIn(dir, "boot", "--dry-run", "--admin-token-file", "admin.token")
	if code == 0 || strings.Contains(stdout+stderr, "hunter2") || !strings.Contains(stderr, "--admin-token-file "+dir+"/admin.token: not a package server token") {
		t.Fatalf("a bad token: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = hephcIn(dir, "boot", "--dry-run", "--disk", "x.img", "--admin-token-file", "admin.token")
	if code == 0 || !strings.Contains(stderr, "--admin-token-file hands the token over on a toplevel's kernel command line") {
		t.Fatalf("with --disk: exit %d\n%s", code, stderr)
	}
}

// pageServer is a real hephc serve on 127.0.0.1 whose registry is an
// in-process one, with one package published by alice into testing and a
// threat report: its URL, a client of it (the certificate pinned) and
// the tokens by role.
type pageServer struct {
	url, cert string
	http      *http.Client
	tokens    map[string]string
	reg       string // oci+http://HOST/heph
	store     *store.Store
	dir       string
}

func startPageServer(t *testing.T, serverCUE ...string) *pageServer {
	t.Helper()
	work := t.TempDir()
	regSrv := httptest.NewServer(ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(regSrv.Close)
	ps := &pageServer{dir: work, tokens: map[string]string{}, reg: "oci+http://" + strings.TrimPrefix(regSrv.URL, "http://") + "/heph"}
	pub := pathtest.Key(t, "alice").Public().String()
	cfg := "package system\n\nimport \"hephc.dev/heph\"\n\nserver: heph.#Server & {\n\tlisten: \"127.0.0.1:0\"\n\tchannels: {testing: {}, stable: {}, deprecated: {}}\n" + strings.Join(serverCUE, "\n") + "\n}\n" +
		"policy: heph.#Policy & {trust: {\n\tpeople: alice: keys: [{key: \"" + pub + "\"}]\n\trules: [{signatures: 1}]\n}}\n"
	if err := os.WriteFile(filepath.Join(work, "server.cue"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(work, "data")
	code, out, errOut := hephcIn(work, "serve", "init", "--data", data, "--root-keys", "3", "--threshold", "2", "--offline-dir", filepath.Join(work, "offline"), "server.cue")
	pins := regexp.MustCompile(`certificate:\s+"(sha256:[0-9a-f]{64})"`).FindStringSubmatch(out)
	if code != 0 || pins == nil {
		t.Fatalf("serve init: exit %d\n%s%s", code, out, errOut)
	}
	ps.cert = pins[1]
	for name, role := range map[string]string{"rita": "reader", "ws-sentinel": "reporter", "pia": "publisher", "max": "maintainer"} {
		code, out, errOut := hephcIn(work, "serve", "token", "--data", data, "--role", role, name)
		if code != 0 {
			t.Fatalf("serve token: %s%s", out, errOut)
		}
		ps.tokens[role] = strings.TrimSpace(out)
	}
	ps.url = serve(t, work, "", "--data", data, "--registry", ps.reg, "server.cue")
	want := strings.TrimPrefix(ps.cert, "sha256:")
	ps.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the pinned certificate is checked below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if sum := sha256.Sum256(raw[0]); hex.EncodeToString(sum[:]) != want {
				return errors.New("not the pinned certificate")
			}
			return nil
		}}}}
	ps.store = pathtest.NewStore(t)
	ps.publish(t, "age", "1.0", "v1")
	rep := ps.client("reporter")
	if _, err := rep.ReportThreats(context.Background(), server.ThreatReport{Node: "workstation", Alerts: []string{"added /bin/nc"}}); err != nil {
		t.Fatal(err)
	}
	return ps
}

func (ps *pageServer) client(role string) *server.Client {
	return &server.Client{Base: ps.url, Token: ps.tokens[role], HTTP: ps.http}
}

// publish installs a path with content, pushes it and publishes it as
// attr version, built by alice.
func (ps *pageServer) publish(t testing.TB, attr, version, content string) *archive.Entry {
	t.Helper()
	p := pathtest.Install(t, ps.store, attr+"-"+version, map[string]string{"bin/" + attr + "*": content, "share/" + content: strings.Repeat(content, 4096)})
	ref, err := registry.ParseRef(ps.reg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&registry.Client{}).Push(context.Background(), ps.store, []store.Path{p}, ref, registry.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ent := res.Pushed[0]
	env := pathtest.Attest(t, nil, p, ent.Subject(), "alice", time.Now())
	req := server.PublishRequest{Attr: attr, Version: version, Paths: []server.PublishedPath{{Path: p.String(), Manifest: ent.Manifest.Digest.String(), Envelopes: [][]byte{env}}}}
	if err := ps.client("publisher").Publish(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	return ent
}

// readerProxy serves the page over plain HTTP on 127.0.0.1 with the
// reader token added, as an authenticating proxy would: a browser on the
// command line sets no header.
func (ps *pageServer) readerProxy(t *testing.T) string {
	u, _ := url.Parse(ps.url)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = ps.http.Transport
	inner := rp.Director
	rp.Director = func(r *http.Request) {
		inner(r)
		r.Host = u.Host
		r.Header.Set("Authorization", "Bearer "+ps.tokens["reader"])
	}
	ts := httptest.NewServer(rp)
	t.Cleanup(ts.Close)
	return ts.URL
}

// chromiumFlags run Debian's chromium headless, with nothing of a
// profile, network service or update.
func chromiumFlags(profile string) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile}
}

// TestPageInChromium loads the page of a real hephc serve, with a package
// published and a threat reported, in headless Chromium: the DOM it
// renders (no JavaScript is needed, and the page has none) holds the
// channel table, the excuse and the threat report; a screenshot is kept
// among the test's artifacts (go test -artifacts).
func TestPageInChromium(t *testing.T) {
	e2e(t, "a hephc serve and headless Chromium")
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found (apt-get install chromium; .ci/apt-packages)")
	}
	noDefaultStore(t)
	ps := startPageServer(t)
	page := ps.readerProxy(t) + "/"
	if _, err := ps.client("reporter").OpenIssue(context.Background(), "age", "1.0", "age-keygen -y crashes on an empty file"); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, append(chromiumFlags(t.TempDir()), args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	start := time.Now()
	dom := run("--dump-dom", page)
	t.Logf("chromium --dump-dom: %d bytes in %v", len(dom), time.Since(start).Round(time.Millisecond))
	for _, want := range []string{
		`<table id="channel-testing" class="channel">`,
		`<caption>testing (version 2): 1 package</caption>`,
		`<th scope="row">age</th><td>1.0</td>`,
		"<li>in testing 0 days of 7</li>",
		"<li>issue #1 open: age-keygen -y crashes on an empty file</li>",
		`<td>workstation</td><td><code>added /bin/nc</code></td>`,
		"Signed in as <strong>rita</strong>",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page as Chromium renders it lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("DOM:\n%s", dom)
	}
	shot := filepath.Join(t.ArtifactDir(), "page.png")
	run("--screenshot="+shot, "--window-size=1280,1600", "--hide-scrollbars", page)
	b, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(b))
	if dst := os.Getenv("HEPHC_PAGE_SCREENSHOT"); dst != "" {
		os.WriteFile(dst, b, 0o644)
	}
}

// tokenLike is a package server token: heph_ and 43 base64url characters.
var tokenLike = regexp.MustCompile(`heph_[A-Za-z0-9_-]{43}`)

// TestNoTokenInStore: the realized example system — every image, the
// sentinel in each, their configurations — holds no package server
// token in any store path (content, file name or link target): the
// reporter token is handed to a machine at boot (hephc boot
// --reporter-token-file), never built in.
func TestNoTokenInStore(t *testing.T) {
	e2e(t, "scans the realized example system's store")
	dir, _, _ := systemStore(t)
	start := time.Now()
	var files, size int64
	root := filepath.Join(dir, "store")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if tokenLike.MatchString(d.Name()) {
			t.Errorf("%s: a token in a file name", p)
		}
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if tokenLike.MatchString(target) {
				t.Errorf("%s: a token in a link target", p)
			}
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			n, found, err := scanForToken(f)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if found != "" {
				t.Errorf("%s: holds a token (%s…)", p, found[:9])
			}
			files++
			size += n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("the store holds no files")
	}
	t.Logf("no token in %d files, %.1f MiB of the store, in %v", files, float64(size)/(1<<20), time.Since(start).Round(time.Millisecond))
}

// scanForToken reads r in blocks, overlapping by a token's length, and
// returns the first token-like string in it.
func scanForToken(r io.Reader) (int64, string, error) {
	const tokLen = len("heph_") + 43
	buf := make([]byte, 1<<20+tokLen)
	keep, total := 0, int64(0)
	for {
		n, err := io.ReadFull(r, buf[keep:])
		total += int64(n)
		chunk := buf[:keep+n]
		if i := bytes.Index(chunk, []byte("heph_")); i >= 0 {
			if m := tokenLike.Find(chunk); m != nil {
				return total, string(m), nil
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, "", nil
		}
		if err != nil {
			return total, "", err
		}
		keep = copy(buf, chunk[len(chunk)-tokLen:])
	}
}

func TestScanForToken(t *testing.T) {
	tok := "heph_" + strings.Repeat("x", 43)
	for _, at := range []int{0, 1<<20 - 20, 1 << 20, 3<<20 + 7} {
		b := bytes.Repeat([]byte{'a'}, 4<<20)
		copy(b[at:], tok)
		if n, got, err := scanForToken(bytes.NewReader(b)); err != nil || got != tok {
			t.Errorf("a token at %d: %q, %v (read %d)", at, got, err, n)
		}
	}
	if n, got, _ := scanForToken(bytes.NewReader(bytes.Repeat([]byte("heph_short "), 1<<18))); got != "" || n != 11<<18 {
		t.Errorf("found %q in no token (read %d)", got, n)
	}
}

// The page needs a reader token unless the configuration's server says
// page: public: true.
func TestPagePublicByConfiguration(t *testing.T) {
	noDefaultStore(t)
	for _, public := range []bool{false, true} {
		var ps *pageServer
		if public {
			ps = startPageServer(t, "\tpage: public: true")
		} else {
			ps = startPageServer(t)
		}
		resp, err := ps.http.Get(ps.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		anonymous := resp.StatusCode == 200 && strings.Contains(string(b), "in testing 0 days of 7")
		if anonymous != public || !public && (resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), "1.0")) {
			t.Errorf("page: public: %v: anonymous GET / answered %d\n%s", public, resp.StatusCode, b)
		}
		stopServer(t)
	}
}

// bootInit is the init of TestSentinelReportsAtBoot's small initramfs:
// it mounts /proc and /sys, starts the sentinel, and once the sentinel
// watches, plants a file in /bin as an intruder would.
const bootInit = `package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

func main() {
	syscall.Mount("proc", "/proc", "proc", 0, "")
	syscall.Mount("sysfs", "/sys", "sysfs", 0, "")
	syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	cmd := exec.Command("/bin/sentinel", "-watch", "/bin", "-interval", "2s", "-node", "workstation", "-server", "https://configured.invalid:1")
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stdout
	if err := cmd.Start(); err != nil {
		fmt.Println("BOOT-INIT: sentinel:", err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		fmt.Println(sc.Text())
		if strings.HasPrefix(sc.Text(), "HEPH-SENTINEL: reporting to") {
			go func() {
				time.Sleep(3 * time.Second)
				os.WriteFile("/bin/planted", []byte("#!/bin/sh\n"), 0o755)
				fmt.Println("BOOT-INIT: planted /bin/planted")
			}()
		}
	}
	cmd.Wait()
	fmt.Println("BOOT-INIT: the sentinel exited")
	for {
		time.Sleep(time.Hour)
	}
}
`

// cpioEntry is one entry of a newc cpio archive.
type cpioEntry struct {
	name       string
	mode       uint32 // with the type bits
	data       []byte
	rmaj, rmin uint32
}

func writeCpio(w io.Writer, es []cpioEntry) {
	pad := func(n int) { w.Write(make([]byte, (4-n%4)%4)) }
	for i, e := range append(es, cpioEntry{name: "TRAILER!!!"}) {
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			i+1, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.rmaj, e.rmin, len(e.name)+1, 0)
		io.WriteString(w, hdr+e.name+"\x00")
		pad(len(hdr) + len(e.name) + 1)
		w.Write(e.data)
		pad(len(e.data))
	}
}

// TestSentinelReportsAtBoot boots the pinned kernel in QEMU with a small
// initramfs (the sentinel built from system/hephinit, and an init that
// plants /bin/planted once the sentinel watches), the reporter token
// handed over by hephc boot --reporter-token-file, the guest's network
// from the kernel's own DHCP (ip=dhcp, QEMU's user network) and the
// server named for this boot (heph.server=https://10.0.2.2:PORT, the
// host's 127.0.0.1): the alert reaches a real hephc serve and its page,
// and the console never shows the token.
func TestSentinelReportsAtBoot(t *testing.T) {
	e2e(t, "boots QEMU")
	requireQEMU(t)
	noDefaultStore(t)
	kernel := os.Getenv("HEPHC_TEST_KERNEL")
	if kernel == "" {
		dir, _, _ := systemStore(t)
		ks, _ := filepath.Glob(filepath.Join(dir, "store", "*-github.com-gokrazy-kernel.amd64-*", "vmlinuz"))
		if len(ks) == 0 {
			t.Fatal("no gokrazy kernel in the shared store")
		}
		kernel = ks[0]
	}
	work := t.TempDir()
	build := func(out, dir string, args ...string) []byte {
		cmd := exec.Command("go", append([]string{"build", "-trimpath", "-o", out}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", out, err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	repo, _ := filepath.Abs("../..")
	sentinel := build(filepath.Join(work, "sentinel"), filepath.Join(repo, "system", "hephinit"), "./sentinel")
	initDir := filepath.Join(work, "init")
	os.MkdirAll(initDir, 0o755)
	os.WriteFile(filepath.Join(initDir, "go.mod"), []byte("module bootinit\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(initDir, "main.go"), []byte(bootInit), 0o644)
	initBin := build(filepath.Join(work, "init.bin"), initDir, ".")
	var initrd bytes.Buffer
	writeCpio(&initrd, []cpioEntry{
		{name: "dev", mode: 0o40755}, {name: "dev/console", mode: 0o20600, rmaj: 5, rmin: 1},
		{name: "proc", mode: 0o40755}, {name: "sys", mode: 0o40755}, {name: "etc", mode: 0o40755}, {name: "bin", mode: 0o40755},
		{name: "init", mode: 0o100755, data: initBin}, {name: "bin/sentinel", mode: 0o100755, data: sentinel},
	})
	k, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	top := fakeToplevel(t, work, map[string]string{"kernel": string(k), "initrd": initrd.String(), "cmdline": "console=ttyS0 panic=-1 ip=dhcp"})

	ps := startPageServer(t)
	tokFile := filepath.Join(work, "reporter.token")
	os.WriteFile(tokFile, []byte(ps.tokens["reporter"]+"\n"), 0o600)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ps.url, "https://"))
	start := time.Now()
	code, stdout, stderr := hephcIn(work, "boot", "--memory", "256", "--reporter-token-file", tokFile,
		"--append", "heph.server=https://10.0.2.2:"+port+" heph.server_cert="+ps.cert,
		"--expect", "HEPH-SENTINEL: reported", "--timeout", "180s", top)
	t.Logf("boot: exit %d in %v", code, time.Since(start).Round(time.Second))
	if code != 0 {
		t.Fatalf("boot: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, ps.tokens["reporter"]) {
		t.Fatalf("the console showed the token:\n%s", stdout)
	}
	th, err := ps.client("reader").Threats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range th.Recent {
		if r.Node == "workstation" && r.Alert == "added /bin/planted" && r.ReportedBy == "ws-sentinel" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the server holds %+v\nconsole:\n%s", th.Recent, stdout)
	}
	_, page := func() (int, string) {
		req, _ := http.NewRequest("GET", ps.url+"/", nil)
		req.Header.Set("Authorization", "Bearer "+ps.tokens["reader"])
		resp, err := ps.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}()
	if !strings.Contains(page, "<code>added /bin/planted</code>") {
		t.Fatal("the page does not show the alert")
	}
}
