package main

import (
	"errors"
	"net/netip"
	"syscall"
	"time"
)

// dial connects to the IP:PORT addr over TCP within timeout, with system
// calls alone (the net package's initialization costs every start).
func dial(addr string, timeout time.Duration) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	family := syscall.AF_INET6
	var sa syscall.Sockaddr
	if ip := ap.Addr(); ip.Is4() {
		family, sa = syscall.AF_INET, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}
	} else {
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	err = syscall.Connect(fd, sa)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EINPROGRESS) {
		return err
	}
	var w syscall.FdSet
	w.Bits[fd/64] |= 1 << (uint(fd) % 64)
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	for {
		n, err := syscall.Select(fd+1, nil, &w, nil, &tv)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("timed out")
		}
		break
	}
	soErr, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err != nil {
		return err
	}
	if soErr != 0 {
		return syscall.Errno(soErr)
	}
	return nil
}
