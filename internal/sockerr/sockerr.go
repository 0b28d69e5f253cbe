// Package sockerr reads the errors Linux queues on a UDP socket that asked
// for them with IP_RECVERR or IPV6_RECVERR: which ICMP message (or local
// failure) a datagram drew, and which host sent it.
//
// The option matters most on a connected UDP socket. Without it the kernel
// reports only the "hard" ICMP errors there (port unreachable, the
// administrative rejects) and drops the rest, among them the host
// unreachable that a failed ARP or neighbour discovery produces when a host
// on the local link is powered off: a datagram to it vanishes without a
// trace. With it every ICMP error sets the socket's pending error, which the
// next receive or send returns, and is also queued with its details on the
// socket's error queue (read with MSG_ERRQUEUE), which the reader must drain:
// the queue counts against the receive buffer and keeps the socket's
// readiness at POLLERR until it is empty.
//
// The main type is Error, an error queue entry. Parse decodes one from the
// control messages of a MSG_ERRQUEUE read (pure, fuzzed); Enable and Drain
// are the system calls around it. Where its job ends: it does not decide
// what an error means for an upstream; udpstream and upstream do.
package sockerr

import (
	"fmt"
	"net/netip"
	"syscall"
)

// Where an error queue entry came from (sock_extended_err.ee_origin).
const (
	OriginLocal = 1 // SO_EE_ORIGIN_LOCAL: the local stack (message too long …)
	OriginICMP  = 2 // SO_EE_ORIGIN_ICMP
	OriginICMP6 = 3 // SO_EE_ORIGIN_ICMP6
)

// Error is one entry of a socket's error queue.
type Error struct {
	Errno  syscall.Errno // what the socket reports for it, as its pending error
	Origin uint8         // OriginLocal, OriginICMP, OriginICMP6 (others are kept as read)
	Type   uint8         // the ICMP type, for the ICMP origins
	Code   uint8         // the ICMP code
	// Offender is the host that sent the ICMP message (a router, or this
	// host itself when its own ARP failed); zero if the kernel named none.
	Offender netip.Addr
}

// Error reads like the errno it stands for, with what the kernel learned:
// "no route to host (ICMP host unreachable from 10.0.0.1)".
func (e *Error) Error() string {
	return e.Errno.Error() + " (" + e.Detail() + ")"
}

// Unwrap makes errors.Is(err, syscall.EHOSTUNREACH) and the like work.
func (e *Error) Unwrap() error { return e.Errno }

// Detail says what the entry records beyond its errno: the ICMP message and
// its sender, "ICMP host unreachable from 10.0.0.1".
func (e *Error) Detail() string {
	var what string
	switch e.Origin {
	case OriginICMP:
		what = "ICMP " + icmpName(e.Type, e.Code)
	case OriginICMP6:
		what = "ICMPv6 " + icmp6Name(e.Type, e.Code)
	case OriginLocal:
		what = "local error"
	default:
		what = fmt.Sprintf("origin %d", e.Origin)
	}
	if e.Offender.IsValid() {
		what += " from " + e.Offender.String()
	}
	return what
}

// icmpName names an ICMPv4 error message (RFC 792, RFC 1812).
func icmpName(typ, code uint8) string {
	switch typ {
	case 3: // destination unreachable
		names := [...]string{"net unreachable", "host unreachable", "protocol unreachable",
			"port unreachable", "fragmentation needed", "source route failed",
			"destination network unknown", "destination host unknown", "source host isolated",
			"network administratively prohibited", "host administratively prohibited",
			"network unreachable for TOS", "host unreachable for TOS",
			"communication administratively prohibited", "host precedence violation",
			"precedence cutoff"}
		return unreachName(names[:], code)
	case 11:
		return "time exceeded"
	case 12:
		return "parameter problem"
	}
	return fmt.Sprintf("type %d code %d", typ, code)
}

// icmp6Name names an ICMPv6 error message (RFC 4443). Code 3 of destination
// unreachable, "address unreachable", is what a failed neighbour discovery
// produces: the IPv6 host unreachable.
func icmp6Name(typ, code uint8) string {
	switch typ {
	case 1: // destination unreachable
		names := [...]string{"no route to destination", "administratively prohibited",
			"beyond scope of source address", "host unreachable (address unreachable)",
			"port unreachable", "source address failed policy", "reject route"}
		return unreachName(names[:], code)
	case 2:
		return "packet too big"
	case 3:
		return "time exceeded"
	case 4:
		return "parameter problem"
	}
	return fmt.Sprintf("type %d code %d", typ, code)
}

// unreachName names a destination unreachable message by its code.
func unreachName(names []string, code uint8) string {
	if int(code) < len(names) {
		return names[code]
	}
	return fmt.Sprintf("destination unreachable code %d", code)
}
