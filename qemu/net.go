package qemu

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NIC is the network card a guest with forwards gets: virtio-net, which
// the gokrazy kernel has built in (CONFIG_VIRTIO_NET=y in its config
// addendum), and is the cheapest card to emulate under TCG.
const NIC = "virtio-net-pci"

// DHCPKernelArg configures the guest's network in its kernel, before
// init runs (IP_PNP_DHCP): QEMU's user network gives it 10.0.2.15.
const DHCPKernelArg = "ip=dhcp"

// Forward is a host port on 127.0.0.1 that QEMU forwards to a guest
// port (QEMU's hostfwd): TCP, or UDP.
type Forward struct {
	Proto     string // tcp or udp
	HostPort  uint16
	GuestPort uint16
}

// String is the forward as ParseForward reads it.
func (f Forward) String() string {
	return fmt.Sprintf("%s:127.0.0.1:%d-:%d", f.Proto, f.HostPort, f.GuestPort)
}

// ParseForward reads PROTO:127.0.0.1:HOSTPORT-:GUESTPORT (QEMU's hostfwd
// syntax; the guest address, when given, must be 10.0.2.15, the guest's).
// The host side is loopback only: a forward never opens the guest to
// the host's network.
func ParseForward(s string) (Forward, error) {
	bad := func(why string) (Forward, error) {
		return Forward{}, fmt.Errorf("forward %q: %s (want tcp:127.0.0.1:HOSTPORT-:GUESTPORT)", s, why)
	}
	host, guest, ok := strings.Cut(s, "-")
	if !ok {
		return bad("no - between the host and the guest side")
	}
	proto, rest, ok := strings.Cut(host, ":")
	if !ok || (proto != "tcp" && proto != "udp") {
		return bad("it starts with tcp: or udp:")
	}
	addr, hport, ok := strings.Cut(rest, ":")
	if !ok {
		return bad("no host port")
	}
	if a, err := netip.ParseAddr(addr); err != nil || a != netip.MustParseAddr("127.0.0.1") {
		return bad(fmt.Sprintf("the host address is %q: only 127.0.0.1 is allowed, so that nothing but this host reaches the guest", addr))
	}
	gaddr, gport, ok := strings.Cut(guest, ":")
	if !ok {
		return bad("no guest port")
	}
	if gaddr != "" && gaddr != "10.0.2.15" {
		return bad(fmt.Sprintf("the guest address is %q: leave it out (the guest is 10.0.2.15)", gaddr))
	}
	hp, err := parsePort(hport)
	if err != nil {
		return bad("host port: " + err.Error())
	}
	gp, err := parsePort(gport)
	if err != nil {
		return bad("guest port: " + err.Error())
	}
	return Forward{Proto: proto, HostPort: hp, GuestPort: gp}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1 to 65535)", s)
	}
	return uint16(n), nil
}

// netArgs give the guest a NIC on QEMU's user network with c's forwards;
// with none, QEMU's default stays (it adds a user-network NIC itself,
// which the sentinel reports to the package server through, at
// 10.0.2.2, the host).
func (c Config) netArgs() []string {
	if len(c.Forwards) == 0 {
		return nil
	}
	nic := "user,model=" + NIC
	for _, f := range c.Forwards {
		nic += ",hostfwd=" + f.String()
	}
	return []string{"-nic", nic}
}

// CheckForwards refuses two forwards of one host port.
func CheckForwards(fs []Forward) error {
	seen := map[string]bool{}
	for _, f := range fs {
		k := fmt.Sprintf("%s:%d", f.Proto, f.HostPort)
		if seen[k] {
			return fmt.Errorf("forward: host port %s %d is forwarded twice", f.Proto, f.HostPort)
		}
		seen[k] = true
	}
	return nil
}
