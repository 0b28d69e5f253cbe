package ftppassive

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// TestServerGoneWhileCommandsBacklogged: the server says 421 and hangs up
// while the client has pipelined more commands than the FIFO holds (the
// command loop waits for a slot, more input sits unread in the socket).
// The client must still read the 421 and then a clean EOF: a close with
// unread input would reset the connection and can destroy that reply.
func TestServerGoneWhileCommandsBacklogged(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.login()
	// More lines than maxOutstanding, and more bytes than the relay's
	// line buffer, so that some stay in the kernel's receive queue.
	backlog := strings.Repeat("NOOP\r\n", maxOutstanding+100000)
	// A small send buffer keeps most of the backlog in the client until
	// the relay reads it.
	tr.client.(*net.TCPConn).SetWriteBuffer(16 << 10)
	wrote := make(chan error, 1)
	go func() {
		tr.client.SetWriteDeadline(time.Now().Add(stepTimeout))
		_, err := tr.client.Write([]byte(backlog))
		wrote <- err
	}()
	// The server takes the first maxOutstanding NOOPs, then leaves.
	for range maxOutstanding {
		tr.server.SetReadDeadline(time.Now().Add(stepTimeout))
		if _, err := tr.sr.ReadString('\n'); err != nil {
			t.Fatalf("server read: %v", err)
		}
	}
	tr.server.Write([]byte("421 Going away.\r\n"))
	tr.server.Close()

	tr.client.SetReadDeadline(time.Now().Add(stepTimeout))
	r := bufio.NewReader(tr.client)
	line, err := r.ReadString('\n')
	if err != nil || line != "421 Going away.\r\n" {
		t.Fatalf("client got %q, %v; want the server's 421", line, err)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after the 421 the client got %q, %v; want a clean EOF", rest, err)
	}
	// The relay drained what the client had sent instead of resetting.
	if err := <-wrote; err != nil {
		t.Fatalf("client's pipelined write: %v; want it taken, not reset", err)
	}
	tr.client.Close()
}

// TestEPSVRefusedAfterItWorked: once the server has answered EPSV, the
// relay sends later EPSVs without holding the client's next commands
// back. If the server then refuses one, asking PASV behind the client's
// pipelined commands would credit their replies to the wrong commands;
// the refusal must go to the client as it is.
func TestEPSVRefusedAfterItWorked(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.login()
	tr.clientSends("EPSV\r\n")
	tr.serverGets()
	tr.serverSends("229 Entering Extended Passive Mode (|||5001|)\r\n")
	tr.relayPort(tr.clientGets(), dataRange)

	tr.clientSends("EPSV\r\nNOOP\r\n")
	if got := tr.serverGets(); got != "EPSV\r\n" {
		t.Fatalf("server got %q, want EPSV", got)
	}
	if got := tr.serverGets(); got != "NOOP\r\n" {
		t.Fatalf("server got %q, want NOOP", got)
	}
	tr.serverSends("500 EPSV not now.\r\n200 NOOP ok.\r\n")
	if got := tr.clientGets(); got != "500 EPSV not now.\r\n" {
		t.Errorf("client's EPSV answered %q, want the server's refusal", got)
	}
	if got := tr.clientGets(); got != "200 NOOP ok.\r\n" {
		t.Errorf("client's NOOP answered %q, want the server's 200", got)
	}
	tr.serverQuiet()
}

// TestConcurrentDataPortsStayTracked: a client that pipelines PORT while
// the server's 227 for its PASV arrives makes the command loop and the
// reply loop open data ports at the same moment. Neither port may fall
// out of the session's bookkeeping: an untracked one would hold its port
// (and keep the session from ending) until data_timeout.
func TestConcurrentDataPortsStayTracked(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange, DataTimeout: time.Minute})
	tr.login()
	ln, port := tr.fakeData("CLIENT_DATA")
	defer ln.Close()
	port227 := fmt.Sprintf("227 Entering Passive Mode (10,9,8,7,%d,%d).\r\n", port>>8, port&0xFF)
	portCmd := fmt.Sprintf("PORT 127,0,0,1,%d,%d\r\n", port>>8, port&0xFF)
	for range 300 {
		tr.client.Write([]byte("PASV\r\n"))
		tr.server.SetReadDeadline(time.Now().Add(stepTimeout))
		if l, err := tr.sr.ReadString('\n'); err != nil || l != "PASV\r\n" {
			t.Fatalf("server got %q, %v", l, err)
		}
		start := make(chan struct{})
		sent := make(chan struct{})
		go func() {
			<-start
			tr.client.Write([]byte(portCmd))
			close(sent)
		}()
		close(start)
		tr.server.Write([]byte(port227))
		<-sent
		tr.server.SetReadDeadline(time.Now().Add(stepTimeout))
		if l, err := tr.sr.ReadString('\n'); err != nil || !strings.HasPrefix(l, "PORT ") {
			t.Fatalf("server got %q, %v", l, err)
		}
		tr.server.Write([]byte("200 PORT ok.\r\n"))
		tr.client.SetReadDeadline(time.Now().Add(stepTimeout))
		for range 2 {
			if _, err := tr.cr.ReadString('\n'); err != nil {
				t.Fatalf("client read: %v", err)
			}
		}
	}
	// At most one unused port per session is kept.
	if n := tr.w.proxy.Stats().DataPortsInUse.Load(); n > 1 {
		t.Errorf("DataPortsInUse = %d with no transfer running, want at most 1", n)
	}
	tr.client.Close()
	tr.server.Close()
	tr.w.logs.Wait(t, "ftp session") // before data_timeout
}
