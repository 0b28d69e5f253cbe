package handoff

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

// TestSocketsAndAnswers sends more sockets than fit one message, checks
// that each arrives under its name and is the same socket, then the three
// answers: ready, a reason, and silence.
func TestSocketsAndAnswers(t *testing.T) {
	old, peerFile, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	peer, err := FromFile(peerFile)
	peerFile.Close()
	if err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const n = batch + 50
	var socks []Socket
	for i := range n {
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		socks = append(socks, Socket{Proto: "tcp", Addr: fmt.Sprintf("name-%d", i), File: f})
	}
	sent := make(chan error, 1)
	go func() { sent <- old.SendSockets(socks) }()
	got, err := peer.ReceiveSockets()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("received %d sockets, want %d", len(got), n)
	}
	for i, s := range got {
		if s.Proto != "tcp" || s.Addr != fmt.Sprintf("name-%d", i) {
			t.Fatalf("socket %d named %s %s", i, s.Proto, s.Addr)
		}
		l, err := net.FileListener(s.File)
		s.File.Close()
		if err != nil {
			t.Fatal(err)
		}
		if l.Addr().String() != ln.Addr().String() {
			t.Errorf("socket %d listens on %s, want %s", i, l.Addr(), ln.Addr())
		}
		l.Close()
	}

	if err := peer.Ready(); err != nil {
		t.Fatal(err)
	}
	if err := old.Answer(); err != nil {
		t.Fatalf("Answer after Ready = %v", err)
	}
	if err := peer.Fail(errors.New("config: listeners[0].listen: bad")); err != nil {
		t.Fatal(err)
	}
	if err := old.Answer(); err == nil || err.Error() != "config: listeners[0].listen: bad" {
		t.Fatalf("Answer after Fail = %v", err)
	}
	peer.Close()
	if err := old.Answer(); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("Answer after the peer closed = %v, want ErrNoAnswer", err)
	}
}
