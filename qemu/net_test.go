package qemu

import (
	"slices"
	"strings"
	"testing"
)

func TestParseForward(t *testing.T) {
	for s, want := range map[string]Forward{
		"tcp:127.0.0.1:18080-:9100":          {"tcp", 18080, 9100},
		"udp:127.0.0.1:5000-10.0.2.15:51820": {"udp", 5000, 51820},
	} {
		got, err := ParseForward(s)
		if err != nil || got != want {
			t.Errorf("ParseForward(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	// The host side is loopback, IPv4, only: anything that could open the
	// guest to the host's network is refused, naming why.
	for s, why := range map[string]string{
		"tcp:0.0.0.0:18080-:9100":      `the host address is "0.0.0.0": only 127.0.0.1`,
		"tcp::18080-:9100":             `the host address is "": only 127.0.0.1`,
		"tcp:192.168.1.5:18080-:9100":  `the host address is "192.168.1.5"`,
		"tcp:localhost:18080-:9100":    `the host address is "localhost"`,
		"tcp:[::]:18080-:9100":         `the host address is "[`,
		"tcp:127.0.0.1:0-:9100":        `host port: "0" is not a port`,
		"tcp:127.0.0.1:65536-:9100":    `host port: "65536" is not a port`,
		"tcp:127.0.0.1:8080-:x":        `guest port: "x" is not a port`,
		"tcp:127.0.0.1:8080-1.2.3.4:1": `the guest address is "1.2.3.4"`,
		"sctp:127.0.0.1:8080-:1":       "it starts with tcp: or udp:",
		"tcp:127.0.0.1:8080":           "no - between",
		"tcp:127.0.0.1:8080-9100":      "no guest port",
	} {
		_, err := ParseForward(s)
		if err == nil || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "want tcp:127.0.0.1:HOSTPORT-:GUESTPORT") {
			t.Errorf("ParseForward(%q): %v; want an error saying %q", s, err, why)
		}
	}
	if err := CheckForwards([]Forward{{"tcp", 1, 2}, {"udp", 1, 2}, {"tcp", 1, 3}}); err == nil || !strings.Contains(err.Error(), "host port tcp 1 is forwarded twice") {
		t.Errorf("CheckForwards: %v", err)
	}
}

func TestArgsNetwork(t *testing.T) {
	c := Config{Kernel: "k", Initramfs: "i", Cmdline: "console=ttyS0"}
	if a := c.Args(); slices.Contains(a, "-nic") {
		t.Errorf("without forwards QEMU's default network stays: %q", a)
	}
	c.Forwards = []Forward{{"tcp", 18080, 9100}, {"udp", 5000, 51820}}
	want := []string{"-nic", "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:18080-:9100,hostfwd=udp:127.0.0.1:5000-:51820"}
	if a := c.Args(); !slices.Equal(a[len(a)-2:], want) {
		t.Errorf("got %q, want it to end %q", a, want)
	}
}
