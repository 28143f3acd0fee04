package sandbox

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireSlirp fails (skips, outside CI) unless slirp4netns is installed.
func requireSlirp(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		if os.Getenv("HEPHC_E2E") == "1" {
			t.Fatalf("slirp4netns is missing (.ci/apt-packages installs it): %v", err)
		}
		t.Skipf("slirp4netns is missing (Debian package slirp4netns): %v", err)
	}
	if err := unix.Access("/dev/net/tun", unix.R_OK|unix.W_OK); err != nil && os.Getenv("HEPHC_E2E") != "1" {
		t.Skipf("slirp4netns needs /dev/net/tun, which this user may not open: %v", err)
	}
	if !privileged() {
		skipOutsideCI(t, "an outbound build needs root (TestOutboundNeedsRoot)")
	}
}

// TestOutboundNeedsRoot: an outbound build asked of hephc as an ordinary
// user is refused at once, saying why, not left to slirp4netns's own
// failure.
func TestOutboundNeedsRoot(t *testing.T) {
	if err := outboundAllowed(true); err != nil {
		t.Errorf("as root: %v", err)
	}
	err := outboundAllowed(false)
	if err == nil || !strings.Contains(err.Error(), "needs hephc to run as root") {
		t.Fatalf("as an ordinary user: %v", err)
	}
	if privileged() {
		return
	}
	var out bytes.Buffer
	err = Run(t.Context(), &Spec{Builtin: "true", Outbound: true, Stdout: &out, Stderr: &out})
	if err == nil || !strings.Contains(err.Error(), "needs hephc to run as root") {
		t.Fatalf("Run: %v\n%s", err, out.Bytes())
	}
}

// hostAddr returns an IPv4 address of one of this host's interfaces other
// than loopback.
func hostAddr(t *testing.T) string {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	t.Fatal("this host has no IPv4 address but loopback's")
	return ""
}

// listenOn opens a TCP listener on addr (host:0), accepting forever.
func listenOn(t *testing.T, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().String()
}

// TestOutboundCannotReachHost: an outbound build reaches neither the
// host's loopback (at 127.0.0.1 or at slirp4netns's gateway) nor the
// host's own address, nor private or link-local ranges, and cannot
// remove the routes that say so. Where the host can reach the public
// internet, the build can too, by name.
func TestOutboundCannotReachHost(t *testing.T) {
	requireSlirp(t)
	lo := listenOn(t, "127.0.0.1:0")
	_, loPort, _ := net.SplitHostPort(lo)
	ha := listenOn(t, net.JoinHostPort(hostAddr(t), "0"))
	// The listeners work from here.
	for _, a := range []string{lo, ha} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			t.Fatalf("the host cannot reach its own listener %s: %v", a, err)
		}
		c.Close()
	}
	// And an abstract unix socket, which belongs to a network namespace.
	abstract := "@hephc-test-" + strconv.Itoa(os.Getpid())
	ul, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ul.Close() })
	ops := []string{
		"dial=" + lo, "dial=" + net.JoinHostPort(slirpGateway, loPort), "dial=" + ha,
		"dial=169.254.169.254:80", "dial=10.1.2.3:80", "dial=192.168.1.1:80", "dial=172.16.0.1:80",
		"dial=100.64.0.1:80", "dial=[2001:db8::1]:80", "dial-unix=" + abstract,
		"route-add", "loopback", "read=/etc/resolv.conf", "uidmap",
	}
	const public = "proxy.golang.org:443"
	hostOnline := false
	if c, err := net.DialTimeout("tcp", public, 5*time.Second); err == nil {
		c.Close()
		hostOnline = true
		ops = append(ops, "resolve=proxy.golang.org", "dial="+public)
	} else {
		t.Logf("the host cannot reach %s (%v): outbound access to the internet is not checked", public, err)
	}
	res := runProbes(t, Spec{Outbound: true}, ops...)
	t.Logf("results: %q", res)
	for _, op := range ops[:10] {
		if !strings.HasPrefix(res[op], "error: ") {
			t.Errorf("%s: got %q, want an error", op, res[op])
		}
	}
	// The host's address and the private ranges are prohibited by route.
	wantErr(t, res, "dial="+ha, "permission denied")
	wantErr(t, res, "dial=169.254.169.254:80", "permission denied")
	wantErr(t, res, "route-add", "operation not permitted")
	wantOK(t, res, "loopback", "")
	wantOK(t, res, "read=/etc/resolv.conf", "nameserver "+slirpDNS)
	if hostOnline {
		if !strings.HasPrefix(res["resolve=proxy.golang.org"], "ok: ") {
			t.Errorf("resolve: got %q, want addresses through slirp4netns's DNS", res["resolve=proxy.golang.org"])
		}
		wantOK(t, res, "dial="+public, "")
	}
}

// TestOutboundRefusesNetwork: Outbound and Network are two different
// things.
func TestOutboundRefusesNetwork(t *testing.T) {
	_, _, err := check(&Spec{Builtin: "true", Network: true, Outbound: true})
	if err == nil || !strings.Contains(err.Error(), "both Network and Outbound") {
		t.Errorf("got %v", err)
	}
}

// TestHostNetworkKeepsLoopback: hephc's own fetchers (Network) still reach
// a proxy on the host's 127.0.0.1.
func TestHostNetworkKeepsLoopback(t *testing.T) {
	lo := listenOn(t, "127.0.0.1:0")
	res := runProbes(t, Spec{Network: true}, "dial="+lo, "read=/proc/self/mountinfo")
	wantOK(t, res, "dial="+lo, "")
	if strings.Contains(res["read=/proc/self/mountinfo"], "/etc/resolv.conf") {
		t.Errorf("resolv.conf is bound, not copied: %s", res["read=/proc/self/mountinfo"])
	}
}

// TestSockstatClean: a namespace is clean when it counts no socket of
// its own, whatever the host's orphans.
func TestSockstatClean(t *testing.T) {
	const clean = "sockets: used 0\nTCP: inuse 0 orphan 3 tw 0 alloc 12 mem 4\nUDP: inuse 0 mem 2\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n"
	if !sockstatClean(clean) {
		t.Errorf("the host's orphans, allocations and memory made a namespace dirty:\n%s", clean)
	}
	for _, dirty := range []string{
		strings.Replace(clean, "used 0", "used 1", 1),
		strings.Replace(clean, "TCP: inuse 0", "TCP: inuse 1", 1),
		strings.Replace(clean, "tw 0", "tw 2", 1),
		strings.Replace(clean, "UDP: inuse 0", "UDP: inuse 1", 1),
		strings.Replace(clean, "memory 0", "memory 512", 1),
	} {
		if sockstatClean(dirty) {
			t.Errorf("clean:\n%s", dirty)
		}
	}
}

// TestNetnsReuse: as root, builds without a network of their own reuse
// network namespaces (netpool.go), but only ones the last build left no
// socket in: a TCP connection left in TIME_WAIT makes the next build get
// a new namespace, which shows none. No build may change a namespace's
// sysctls.
func TestNetnsReuse(t *testing.T) {
	if !privileged() {
		t.Skip("builds get pooled network namespaces when the caller is root")
	}
	const ns = "readlink=/proc/self/ns/net"
	first := runProbes(t, Spec{}, ns, "read=/proc/net/tcp")[ns]
	second := runProbes(t, Spec{}, ns)[ns]
	if !strings.HasPrefix(first, "ok: net:[") || second != first {
		t.Fatalf("two builds in a row ran in %s and %s, want one reused namespace", first, second)
	}
	dirty := runProbes(t, Spec{}, ns, "timewait", "write=/proc/sys/net/ipv4/ip_local_port_range",
		"write=/proc/sys/net/core/somaxconn")
	t.Logf("results: %q", dirty)
	if dirty[ns] != first {
		t.Fatalf("the third build ran in %s, want the reused %s", dirty[ns], first)
	}
	wantOK(t, dirty, "timewait", "")
	wantErr(t, dirty, "write=/proc/sys/net/ipv4/ip_local_port_range", "permission denied")
	wantErr(t, dirty, "write=/proc/sys/net/core/somaxconn", "permission denied")
	next := runProbes(t, Spec{}, ns, "read=/proc/net/tcp", "read=/proc/net/tcp6")
	t.Logf("results: %q", next)
	if next[ns] == first {
		t.Errorf("the build after one that left a connection in TIME_WAIT reused its namespace %s", first)
	}
	for _, f := range []string{"read=/proc/net/tcp", "read=/proc/net/tcp6"} {
		if r := next[f]; !strings.HasPrefix(r, "ok: ") || strings.Contains(r, "\n") {
			t.Errorf("%s: got %q, want its header alone", f, r)
		}
	}
	// And the namespace is still only loopback's, up.
	wantOK(t, runProbes(t, Spec{}, "loopback"), "loopback", "")
}
