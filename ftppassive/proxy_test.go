package ftppassive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	testworld "github.com/edgerelay/relay/internal/world"
)

// TestUntrustedServerIP: without TrustServerIP the relay dials the control
// connection's address, whatever the 227 says; a server whose data port is
// only on the advertised address is unreachable, and that is counted.
func TestUntrustedServerIP(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.login()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	tr.clientSends("PASV\r\n")
	tr.serverGets()
	tr.serverSends(fmt.Sprintf("227 Entering Passive Mode (127,0,0,3,%d,%d).\r\n", port>>8, port&0xFF))
	rp := tr.relayPort(tr.clientGets(), dataRange)
	c := dialTCP(t, fmt.Sprintf("127.0.0.1:%d", rp))
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(stepTimeout))
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Fatalf("client read %d bytes", n)
	}
	tr.w.logs.Wait(t, "data connection: dial failed", fmt.Sprintf("127.0.0.1:%d", port))
	st := tr.w.proxy.Stats()
	if st.DataFailed.Load() != 1 || st.DataOpened.Load() != 0 || st.DialFailures.Load() != 1 {
		t.Errorf("DataFailed %d DataOpened %d DialFailures %d, want 1 0 1",
			st.DataFailed.Load(), st.DataOpened.Load(), st.DialFailures.Load())
	}
}

// TestDataTimeout: a passive port nobody connects to closes after
// DataTimeout and goes back to the pool.
func TestDataTimeout(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange, DataTimeout: 200 * time.Millisecond})
	tr.login()
	tr.clientSends("PASV\r\n")
	tr.serverGets()
	tr.serverSends("227 Entering Passive Mode (10,9,8,7,19,137).\r\n")
	rp := tr.relayPort(tr.clientGets(), dataRange)
	if n := tr.w.proxy.Stats().DataPortsInUse.Load(); n != 1 {
		t.Fatalf("DataPortsInUse = %d, want 1", n)
	}
	tr.w.logs.Wait(t, "data port closed unused", "nobody connected within data_timeout")
	if n := tr.w.proxy.Stats().DataPortsInUse.Load(); n != 0 {
		t.Errorf("DataPortsInUse = %d after the timeout, want 0", n)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", rp), stepTimeout); err == nil {
		c.Close()
		t.Fatal("the timed-out data port still accepts")
	}
	tr.serverQuiet() // the session lives on
}

// TestAdmitRejects: the ACL hook closes a client before the relay dials
// the server; forward counts it.
func TestAdmitRejects(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	up := listenLoopback(t)
	w := startProxy(t, Config{
		Upstreams: [][]string{{up.Addr().String()}},
		Admit:     func(netip.AddrPort) bool { return false },
	})
	c := dialTCP(t, w.addr)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(stepTimeout))
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Fatalf("a rejected client read %d bytes", n)
	}
	st := w.proxy.Stats()
	if st.Control.Rejected.Load() != 1 || st.Sessions.Load() != 0 {
		t.Errorf("Rejected %d Sessions %d, want 1 0", st.Control.Rejected.Load(), st.Sessions.Load())
	}
}

// TestShutdownDrains: Shutdown waits for a running transfer, then, when its
// context ends, closes it; Serve returns ErrClosed.
func TestShutdownDrains(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.login()
	ln, port := tr.fakeData("SERVER_DATA")
	tr.clientSends("PASV\r\n")
	tr.serverGets()
	tr.serverSends(fmt.Sprintf("227 Entering Passive Mode (10,9,8,7,%d,%d).\r\n", port>>8, port&0xFF))
	rp := tr.relayPort(tr.clientGets(), dataRange)
	c := dialTCP(t, fmt.Sprintf("127.0.0.1:%d", rp))
	defer c.Close()
	s := acceptOne(t, ln)
	defer s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := tr.w.proxy.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a transfer running = %v, want the context's deadline", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("Shutdown returned after %v without waiting for the transfer", el)
	}
	// Forced: the transfer and the control connection are closed.
	c.SetReadDeadline(time.Now().Add(stepTimeout))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("data connection after the forced shutdown: %v", err)
	}
	line := tr.w.logs.Wait(t, `"end":"shutdown"`, "ftp session")
	// The session line, as the README's access log table lists it.
	fields := testworld.CheckFields(t, line, "client", "data_bytes_down", "data_bytes_up", "duration_ms", "end",
		"level", "listen", "listener", "message", "transfers", "upstream")
	if fields["listen"] != tr.w.addr {
		t.Errorf("listen = %v, want %s", fields["listen"], tr.w.addr)
	}
	if ms, ok := fields["duration_ms"].(float64); !ok || ms < 250 || ms > 60_000 {
		t.Errorf("duration_ms = %v, want the milliseconds the session lasted (at least 250)", fields["duration_ms"])
	}
	// The control port is free again for a new Proxy.
	p, err := Listen(Config{Listen: []string{tr.w.addr}, Upstreams: [][]string{{"127.0.0.1:1"}}})
	if err != nil {
		t.Fatalf("rebinding the control port after Shutdown: %v", err)
	}
	p.Close()
}

// TestPassivePreDial: the relay connects to the server's data port as soon
// as the 227/229 names it, before the client connects. A connection from a
// foreign address is still refused and leaves that connection alone; when
// the client never comes, it is closed with the port: on a newer PASV and
// on data_timeout.
func TestPassivePreDial(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange, DataTimeout: 300 * time.Millisecond})
	tr.login()
	ln, port := tr.fakeData("SERVER_DATA")
	epsv := func() (net.Conn, int) {
		tr.clientSends("EPSV\r\n")
		tr.serverGets()
		tr.serverSends(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)\r\n", port))
		rp := tr.relayPort(tr.clientGets(), dataRange)
		// Accepted although no client has connected yet.
		return acceptOne(t, ln), rp
	}
	closedSoon := func(what string, s net.Conn) {
		t.Helper()
		s.SetReadDeadline(time.Now().Add(stepTimeout))
		if n, err := io.Copy(io.Discard, s); n != 0 || err != nil {
			t.Fatalf("%s: the pre-dialled connection got %d bytes, err %v; want a plain close", what, n, err)
		}
		s.Close()
	}

	// Replaced by a newer EPSV: the first server connection closes.
	first, _ := epsv()
	second, rp := epsv()
	closedSoon("replaced port", first)

	// A theft attempt is refused and does not touch the server side; the
	// rightful client then gets the pre-dialled connection.
	if thief, err := dialFrom(t, "127.0.0.2", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(rp))); err == nil {
		thief.SetReadDeadline(time.Now().Add(stepTimeout))
		if n, _ := io.Copy(io.Discard, thief); n != 0 {
			t.Fatalf("the thief read %d bytes", n)
		}
		thief.Close()
	}
	tr.w.logs.Wait(t, "data connection from a foreign address refused", "127.0.0.2")
	c := dialTCP(t, fmt.Sprintf("127.0.0.1:%d", rp))
	tr.transfer("server->client", second, c, 64<<10)

	// Nobody comes: the server connection closes with the port.
	unused, _ := epsv()
	closedSoon("data_timeout", unused)
	tr.w.logs.Wait(t, "data port closed unused", "nobody connected within data_timeout")

	st := tr.w.proxy.Stats()
	if st.DataOpened.Load() != 1 || st.DataFailed.Load() != 2 || st.DataTheftAttempts.Load() != 1 || st.DialFailures.Load() != 0 {
		t.Errorf("DataOpened %d DataFailed %d DataTheftAttempts %d DialFailures %d, want 1 2 1 0",
			st.DataOpened.Load(), st.DataFailed.Load(), st.DataTheftAttempts.Load(), st.DialFailures.Load())
	}
	if n := st.DataPortsInUse.Load(); n != 0 {
		t.Errorf("DataPortsInUse = %d, want 0", n)
	}
}
