package world

import (
	"net"
	"strconv"
	"testing"
)

// TestPortRunSkipsAnotherBinarysPort: a port another test binary holds (its
// lock file taken, here through a second open file) is never part of a
// run; a run that meets it gives back every port it had claimed, both in
// this process and in the lock files; a run that succeeds can be bound
// port by port and is not handed out again.
func TestPortRunSkipsAnotherBinarysPort(t *testing.T) {
	first := ReserveTCPPortRun(t, 3)
	for p := first; p < first+3; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d of the run: %v", p, err)
		}
		ln.Close()
		if claimRun(t, "tcp", p, 1) {
			t.Fatalf("port %d was handed out twice", p)
		}
	}

	// Pick a spot outside the run and let "another binary" hold its middle.
	held := first + 10
	other, ok := claimPort(held)
	if other == nil || !ok {
		t.Skip("no lock files here (temporary directory not writable)")
	}
	defer other.Close()
	if claimRun(t, "tcp", held-1, 3) {
		t.Fatalf("a run over port %d, which another binary holds, was claimed", held)
	}
	if _, taken := reserved.Load(held - 1); taken {
		t.Errorf("port %d stayed reserved after its run failed", held-1)
	}
	f, ok := claimPort(held - 1)
	if f == nil || !ok {
		t.Errorf("port %d's lock stayed taken after its run failed", held-1)
	} else {
		f.Close()
	}
	other.Close()
	if !claimRun(t, "tcp", held-1, 3) {
		t.Errorf("the run over port %d was refused after the other binary let it go", held)
	}
}

// TestReserveUDPPort: the port is below the ephemeral range and can be
// bound for UDP, and no later TCP or UDP reservation returns it.
func TestReserveUDPPort(t *testing.T) {
	p := ReserveUDPPort(t)
	if p < reservedPorts[0] || p >= reservedPorts[1] {
		t.Fatalf("port %d is outside %v", p, reservedPorts)
	}
	c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if claimRun(t, "udp", p, 1) || claimRun(t, "tcp", p, 1) {
		t.Fatalf("port %d was handed out twice", p)
	}
}
