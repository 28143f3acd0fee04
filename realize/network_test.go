package realize_test

import (
	"net"
	"os"
	"strings"
	"testing"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// A fixed-output derivation whose builder is the user's gets the network
// without the host: a listener on the host's 127.0.0.1 is unreachable
// from it, while a control build on the host reaches it.
func TestFixedOutputUserBuilderCannotReachHostLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := l.Addr().String()
	if c, err := net.Dial("tcp", addr); err != nil {
		t.Fatalf("the host itself cannot reach its listener: %v", err)
	} else {
		c.Close()
	}

	f := storetest.New(t, t.TempDir())
	fod := f.Add(t, &store.Derivation{
		Name: "sneaky-fetch", Builder: "@{tool}", Args: []string{"dial=" + addr, "single=x"},
		Inputs:     map[string]store.DrvHash{"tool": f.Tool},
		OutputHash: "blake3:" + strings.Repeat("0", 64),
	}, "pkgs.sneaky")
	_, err = f.Realize(t, realize.Options{}, fod)
	if err == nil {
		t.Fatal("the fetch with a wrong pin succeeded")
	}
	log, rerr := os.ReadFile(f.St.LogPath(fod))
	if rerr != nil {
		t.Fatalf("%v (realize: %v)", rerr, err)
	}
	if strings.Contains(string(log), "connected") || !strings.Contains(string(log), "dial "+addr+": unreachable") {
		t.Errorf("a fixed-output build with a user's builder reached the host's 127.0.0.1 (realize: %v):\n%s", err, log)
	}
	if v := storetest.Valid(t, f.St, f.G.PathOf(fod)); v[f.G.PathOf(fod)] {
		t.Error("the fetch with a wrong pin is valid")
	}
}
