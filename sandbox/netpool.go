package sandbox

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// This file keeps network namespaces for builds to reuse. Making one
// costs ~0.6 ms of CPU in clone (its sysctl tables, its loopback device)
// and more again when the kernel tears it down, in a worker thread, after
// the build; a build without Network or Outbound needs only a loopback
// that is up. So when the caller is root, such a build gets a namespace
// from this process's pool: made by hephc (unshare on a thread of its
// own), with its loopback brought up, owned by the host's user
// namespace. The build's user namespace is a child of it, so neither the
// init nor the build, whatever capabilities they hold in their own, may
// change it: no address, route, interface flag, sysctl (/proc/sys/net is
// root's of the host) or firewall rule. What a build could leave in it
// is sockets, and those go with its processes, which are all dead once
// its init is (the pid namespace dies with it): but for TCP connections
// left in TIME_WAIT, which would tell the next build the ports used and
// could refuse it one. So before a namespace is reused, the thread that
// starts the next init, in it, reads the namespace's socket counts
// (netClean): a namespace with any socket left in it (TCP, in TIME_WAIT
// too, UDP, raw, packet, Unix) is dropped and a new one made
// (TestNetnsReuse).

// netPool is this process's reusable network namespaces, as open
// /proc/thread-self/ns/net files.
var netPool struct {
	mu   sync.Mutex
	free []int
}

// netPoolHost returns this process's network namespace, as an open file.
var netPoolHost = sync.OnceValues(func() (int, error) {
	return unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
})

// pooledNet says whether a build with spec s gets a pooled namespace.
func pooledNet(s *Spec, ids *hostIDs) bool {
	return !s.Network && !s.Outbound && ids.own() && os.Getenv(NetPoolEnv) != "off"
}

// NetPoolEnv, set to "off", makes every build make a network namespace
// of its own.
const NetPoolEnv = "HEPHC_SANDBOX_NETPOOL"

// enterPooledNet moves the calling thread, which must be locked to its
// goroutine, into a clean namespace of the pool, or a new one, and
// returns it. leaveNet moves it back.
func enterPooledNet() (int, error) {
	host, err := netPoolHost()
	if err != nil {
		return -1, fmt.Errorf("sandbox: opening this process's network namespace: %w", err)
	}
	for {
		netPool.mu.Lock()
		fd := -1
		if n := len(netPool.free); n > 0 {
			fd, netPool.free = netPool.free[n-1], netPool.free[:n-1]
		}
		netPool.mu.Unlock()
		if fd < 0 {
			break
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("sandbox: entering a pooled network namespace: %w", err)
		}
		if netClean() {
			return fd, nil
		}
		unix.Close(fd)
		if err := unix.Setns(host, unix.CLONE_NEWNET); err != nil {
			return -1, fmt.Errorf("sandbox: leaving a used network namespace: %w", err)
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("sandbox: making a network namespace: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return -1, fmt.Errorf("sandbox: bringing up loopback: %w", err)
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("sandbox: opening a new network namespace: %w", err)
	}
	return fd, nil
}

// leaveNet moves the calling thread back to this process's network
// namespace.
func leaveNet() error {
	host, err := netPoolHost()
	if err == nil {
		err = unix.Setns(host, unix.CLONE_NEWNET)
	}
	return err
}

// putNet gives the namespace fd back to the pool, once every process of
// the build that used it is dead.
func putNet(fd int) {
	netPool.mu.Lock()
	defer netPool.mu.Unlock()
	netPool.free = append(netPool.free, fd)
}

// netClean reports whether the calling thread's network namespace holds
// no socket (sockstatClean of /proc/net/sockstat and sockstat6). Listing
// the sockets (/proc/net/tcp) would walk the host's whole connection
// table: ~8 ms.
func netClean() bool {
	for _, f := range []string{"sockstat", "sockstat6"} {
		b, err := os.ReadFile("/proc/thread-self/net/" + f)
		if os.IsNotExist(err) {
			continue // no IPv6 in this kernel
		}
		if err != nil || !sockstatClean(string(b)) {
			return false
		}
	}
	return true
}

// sockstatClean reports whether a namespace's sockstat counts no socket:
// "sockets: used", each protocol's "inuse" (a TCP socket its process
// closed, an orphan still sending, is in use until it is unhashed), TCP
// connections in TIME_WAIT ("tw") and fragments being reassembled
// ("memory") must be 0. TCP's "orphan", "alloc" and "mem" and UDP's
// "mem" are the host's (net/ipv4/proc.c sums them over every namespace):
// counting them would drop every namespace while any process on the host
// has an orphaned connection.
func sockstatClean(s string) bool {
	fields := strings.Fields(s)
	for i := 0; i+1 < len(fields); i++ {
		switch fields[i] {
		case "used", "inuse", "tw", "memory":
			if fields[i+1] != "0" {
				return false
			}
		}
	}
	return true
}
