package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// listeners returns the listening TCP sockets and bound UDP sockets of
// the machine, from proc's net/tcp, tcp6, udp and udp6, as "tcp
// 0.0.0.0:22" and "udp6 [::]:53".
func listeners(proc string) map[string]bool {
	out := make(map[string]bool)
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open(filepath.Join(proc, "net", proto))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 {
				continue
			}
			// st: 0A is LISTEN for TCP; 07 is an unconnected (bound)
			// UDP socket.
			want := "0A"
			if strings.HasPrefix(proto, "udp") {
				want = "07"
			}
			if fields[3] != want {
				continue
			}
			if addr, err := parseAddr(fields[1]); err == nil {
				out[proto+" "+addr] = true
			}
		}
		f.Close()
	}
	return out
}

// parseAddr decodes a /proc/net address, e.g. 0100007F:1F90 (the IP in
// the kernel's byte order, 32-bit words in host order) to 127.0.0.1:8080.
func parseAddr(s string) (string, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", fmt.Errorf("bad address %q", s)
	}
	// Each 32-bit word is little-endian on the machines heph builds for.
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return "", fmt.Errorf("bad port in %q", s)
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10)), nil
}
