package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// The bench binds its fixed ports below the kernel's ephemeral range
// (32768–60999 by default): the connection-rate scenario uses tens of
// thousands of ephemeral ports, and tests that bind port 0 take theirs there
// too, so a port picked here is unlikely to be taken a moment later.
const (
	portLow  = 15000
	portHigh = 32000
)

// portAlloc hands out loopback ports that were free, for TCP and UDP alike,
// when they were handed out. Ports are never handed out twice in one run.
type portAlloc struct {
	next int
}

func newPortAlloc() *portAlloc {
	return &portAlloc{next: portLow + rand.IntN(portHigh-portLow-4000)}
}

// one returns a free port.
func (a *portAlloc) one() (int, error) {
	first, err := a.block(1)
	return first, err
}

// block returns the first of n consecutive free ports.
func (a *portAlloc) block(n int) (int, error) {
	for tries := 0; tries < 200; tries++ {
		if a.next+n > portHigh {
			a.next = portLow
		}
		first := a.next
		ok := true
		for p := first; p < first+n; p++ {
			if !portFree(p) {
				a.next = p + 1
				ok = false
				break
			}
		}
		if ok {
			a.next = first + n
			return first, nil
		}
	}
	return 0, errors.New("no free block of loopback ports")
}

// portFree tries to bind the port on 127.0.0.1 for TCP and for UDP.
func portFree(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return false
	}
	l.Close()
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// loopback formats a 127.0.0.1 address.
func loopback(port int) string {
	return fmt.Sprintf("127.0.0.1:%d", port)
}
