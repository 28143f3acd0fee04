package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// This file gives an Outbound sandbox its way out: slirp4netns, a user-mode
// network stack run by the caller outside the sandbox, connected to the
// sandbox's network namespace by a tap device. Connections from inside
// become the caller's own sockets, so what they may reach is decided inside
// the namespace, by routes the init installs before it drops its
// capabilities (net.go), and by slirp4netns's --disable-host-loopback,
// which stops its gateway address 10.0.2.2 from reaching the host's
// 127.0.0.1. slirp4netns runs with --enable-sandbox (its own mount
// namespace, no capabilities) and --enable-seccomp.

// slirpTimeout bounds the wait for slirp4netns to configure the namespace.
const slirpTimeout = 10 * time.Second

// Addresses in slirp4netns's network (its default --cidr 10.0.2.0/24).
const (
	slirpGateway = "10.0.2.2"
	slirpDNS     = "10.0.2.3"
)

// slirp is a running slirp4netns.
type slirp struct {
	cmd  *exec.Cmd
	exit *os.File // closing it makes slirp4netns exit
}

// outboundAllowed says why an Outbound build cannot run, if it cannot:
// slirp4netns joins the build's user namespace and acts as uid 0 there,
// which only a namespace made by root maps (as an ordinary user, the
// namespace maps the build's uid alone, and slirp4netns fails with
// "setegid(0)").
func outboundAllowed(root bool) error {
	if root {
		return nil
	}
	return errors.New("sandbox: an outbound build (a fixed-output derivation that fetches with its own program, through slirp4netns) needs hephc to run as root: slirp4netns acts as uid 0 in the build's user namespace, which maps only the build's uid otherwise (hephc's own fetchers need no root)")
}

// slirpPath finds slirp4netns.
func slirpPath() (string, error) {
	p, err := exec.LookPath("slirp4netns")
	if err != nil {
		return "", fmt.Errorf("sandbox: an outbound build needs slirp4netns (Debian package slirp4netns): %w", err)
	}
	return p, nil
}

// startSlirp connects the network namespace of process pid to the
// outside, and returns once its interface tap0 is configured.
func startSlirp(pid int, log io.Writer) (*slirp, error) {
	path, err := slirpPath()
	if err != nil {
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	// Its complaints go to the build's log, and the last of them into
	// the error if it fails.
	var last tailBuffer
	if log == nil {
		log = io.Discard
	}
	out := io.MultiWriter(log, &last)
	cmd := &exec.Cmd{
		Path: path,
		Args: []string{"slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
			"--enable-sandbox", "--enable-seccomp", "--ready-fd=3", "--exit-fd=4",
			strconv.Itoa(pid), "tap0"},
		Env:         []string{},
		Dir:         "/",
		Stdout:      out,
		Stderr:      out,
		ExtraFiles:  []*os.File{readyW, exitR},
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	err = cmd.Start()
	readyW.Close()
	exitR.Close()
	if err != nil {
		exitW.Close()
		return nil, fmt.Errorf("sandbox: starting slirp4netns: %w", err)
	}
	s := &slirp{cmd: cmd, exit: exitW}
	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := readyR.Read(b)
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(slirpTimeout):
		err = errors.New("timed out")
	}
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("sandbox: slirp4netns did not configure the network: %w: %s", err, strings.TrimSpace(last.String()))
	}
	return s, nil
}

// tailBuffer keeps the last 1 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 1024 {
		t.buf = t.buf[len(t.buf)-1024:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// stop ends slirp4netns and waits for it.
func (s *slirp) stop() {
	s.exit.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// hostAddrs returns the addresses of this host's interfaces, but
// loopback's: an outbound build must not reach them through slirp4netns.
func hostAddrs() ([]string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("sandbox: listing the host's addresses: %w", err)
	}
	var out []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() {
			continue
		}
		out = append(out, ipn.IP.String())
	}
	return out, nil
}
