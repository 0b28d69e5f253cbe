package main

import (
	"errors"
	"net"
	"testing"

	"github.com/pion/transport/v3/test"
)

// TestStatusRTTsInTurns: every target gets its round trips, each answer is
// checked (a printer that answers wrong fails its own target only), and a
// target that cannot be reached fails alone.
func TestStatusRTTsInTurns(t *testing.T) {
	defer test.CheckRoutines(t)()
	good, err := listenTCP(printer)
	if err != nil {
		t.Fatal(err)
	}
	defer good.close()
	liar, err := listenTCP(func(c *net.TCPConn) {
		var req [3]byte
		for {
			if _, err := c.Read(req[:]); err != nil {
				return
			}
			if _, err := c.Write([]byte{0xff}); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer liar.close()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()

	vals, errs := statusRTTs([]rttTarget{
		{addr: good.addr()}, {addr: liar.addr()}, {addr: goneAddr}, {addr: good.addr(), prefix: "plain_"},
	}, 200)
	for _, i := range []int{0, 3} {
		if errs[i] != nil {
			t.Fatalf("target %d: %v", i, errs[i])
		}
	}
	if p50, p99 := vals[0]["p50"], vals[0]["p99"]; p50 <= 0 || p99 < p50 {
		t.Errorf("p50 %v, p99 %v", p50, p99)
	}
	if _, ok := vals[3]["plain_p99"]; !ok {
		t.Errorf("prefixed target's figures: %v", vals[3])
	}
	if !errors.Is(errs[1], errIntegrity) {
		t.Errorf("a printer answering wrong: %v, want an integrity failure", errs[1])
	}
	if errs[2] == nil {
		t.Error("an address nobody listens on measured fine")
	}
}
