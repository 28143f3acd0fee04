package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file sets up the sandbox's network namespace, inside the init.

// loopbackUp brings up the loopback interface of this network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// blockedNets are what an Outbound build may not reach: every range that
// is not the public internet. slirp4netns's own network, 10.0.2.0/24, is
// more specific than 10.0.0.0/8 and stays reachable: its DNS forwarder
// 10.0.2.3, and its gateway 10.0.2.2, blocked here anyway (with
// --disable-host-loopback it leads nowhere).
var blockedNets = []string{
	"0.0.0.0/8",      // "this" network
	"10.0.0.0/8",     // private
	"100.64.0.0/10",  // shared address space (carrier-grade NAT)
	"169.254.0.0/16", // link-local, the cloud metadata service
	"172.16.0.0/12",  // private
	"192.0.0.0/24",   // IETF protocol assignments
	"192.168.0.0/16", // private
	"198.18.0.0/15",  // benchmarking
	"224.0.0.0/4",    // multicast
	"240.0.0.0/4",    // reserved, broadcast
	slirpGateway + "/32",
	"fc00::/7",  // unique local
	"fe80::/10", // link-local
	"ff00::/8",  // multicast
}

// blockRoutes installs a "prohibit" route (connect fails with EACCES) to
// each of blockedNets and to each of the host's addresses in this network
// namespace. The build, without CAP_NET_ADMIN, cannot remove them.
func blockRoutes(hostAddrs []string) error {
	nets := append([]string(nil), blockedNets...)
	for _, a := range hostAddrs {
		ip := net.ParseIP(a)
		if ip == nil {
			return fmt.Errorf("sandbox: host address %q is not an IP address", a)
		}
		if ip.To4() != nil {
			nets = append(nets, ip.String()+"/32")
		} else {
			nets = append(nets, ip.String()+"/128")
		}
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("sandbox: opening a netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sandbox: binding a netlink socket: %w", err)
	}
	for i, n := range nets {
		_, ipn, err := net.ParseCIDR(n)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		err = addProhibitRoute(fd, uint32(i+1), ipn)
		if errors.Is(err, unix.EEXIST) {
			continue // a host address inside a range already blocked
		}
		if err != nil && ipn.IP.To4() == nil && (errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP)) {
			continue // no IPv6 in this kernel: nothing to block
		}
		if err != nil {
			return fmt.Errorf("sandbox: blocking %s: %w", n, err)
		}
	}
	return nil
}

// addProhibitRoute sends RTM_NEWROUTE for a prohibit route to dst on the
// netlink socket fd and waits for the kernel's answer.
func addProhibitRoute(fd int, seq uint32, dst *net.IPNet) error {
	family, ip := uint8(unix.AF_INET6), dst.IP.To16()
	if v4 := dst.IP.To4(); v4 != nil {
		family, ip = unix.AF_INET, v4
	}
	ones, _ := dst.Mask.Size()
	attrLen := unix.SizeofRtAttr + len(ip)
	msg := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg+align4(attrLen))
	le := binary.NativeEndian
	le.PutUint32(msg[0:], uint32(len(msg)))
	le.PutUint16(msg[4:], unix.RTM_NEWROUTE)
	le.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	le.PutUint32(msg[8:], seq)
	rt := msg[unix.SizeofNlMsghdr:]
	rt[0] = family
	rt[1] = uint8(ones)        // dst_len
	rt[4] = unix.RT_TABLE_MAIN // table
	rt[5] = unix.RTPROT_STATIC // protocol
	rt[6] = unix.RT_SCOPE_UNIVERSE
	rt[7] = unix.RTN_PROHIBIT // type
	attr := rt[unix.SizeofRtMsg:]
	le.PutUint16(attr[0:], uint16(attrLen))
	le.PutUint16(attr[2:], unix.RTA_DST)
	copy(attr[unix.SizeofRtAttr:], ip)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if errno := int32(le.Uint32(m.Data[:4])); errno != 0 {
				return unix.Errno(-errno)
			}
			return nil
		}
	}
}

func align4(n int) int { return (n + 3) &^ 3 }
