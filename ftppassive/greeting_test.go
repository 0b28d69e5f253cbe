package ftppassive

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// pipelinedLogin is what `printf … | nc relay 21` sends: every command at
// once, before the greeting has arrived.
const pipelinedLogin = "USER anonymous\r\nPASS x\r\nSYST\r\nLPSV\r\nQUIT\r\n"

// replyCodes reads replies until EOF and returns the code of each
// complete reply (the last line of a multi-line one).
func replyCodes(r io.Reader) ([]string, error) {
	var codes []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) >= 4 && line[3] == ' ' {
			codes = append(codes, line[:3])
		}
	}
	return codes, sc.Err()
}

// TestCommandsBeforeGreeting: a client that sends its commands before the
// server's greeting gets the replies in command order. The greeting
// answers no command; before, it was credited to USER, every reply after
// it to the command before its own, and the relay's 502 for LPSV jumped
// ahead of SYST's 215.
func TestCommandsBeforeGreeting(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.clientSends(pipelinedLogin)
	for _, want := range []string{"USER anonymous\r\n", "PASS x\r\n", "SYST\r\n", "QUIT\r\n"} {
		if got := tr.serverGets(); got != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
	}
	tr.serverSends("220-Welcome\r\n220 Ready\r\n331 Password please.\r\n230 Logged in.\r\n215 UNIX Type: L8\r\n221 Goodbye.\r\n")
	tr.server.Close()
	tr.client.SetReadDeadline(time.Now().Add(stepTimeout))
	codes, err := replyCodes(tr.cr)
	if got := strings.Join(codes, " "); got != "220 331 230 215 502 221" || err != nil {
		t.Fatalf("client got replies %s (%v), want 220 331 230 215 502 221", got, err)
	}
}

// TestVsftpdCommandsBeforeGreeting: the same against vsftpd, many times
// over, so that the greeting arrives before, between and after the
// client's commands.
func TestVsftpdCommandsBeforeGreeting(t *testing.T) {
	v := startVsftpd(t, vsftpdOptions{})
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: interopRange})
	const runs = 40
	bad := 0
	for i := range runs {
		c, err := net.DialTimeout("tcp", w.addr, stepTimeout)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(pipelinedLogin))
		c.SetReadDeadline(time.Now().Add(stepTimeout))
		codes, err := replyCodes(c)
		c.Close()
		got := strings.Join(codes, " ")
		// vsftpd lets anonymous in at USER (230) or asks a password (331).
		if got != "220 230 230 215 502 221" && got != "220 331 230 215 502 221" || err != nil {
			bad++
			t.Errorf("run %d: replies %s (%v), want 220 230|331 230 215 502 221", i, got, err)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d runs out of order", bad, runs)
	}
}

// TestLocalAnswerBeforeGreeting: a command the relay answers itself, sent
// before anything was sent to the server, is answered after the greeting.
func TestLocalAnswerBeforeGreeting(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.clientSends("LPSV\r\nNOOP\r\n")
	if got := tr.serverGets(); got != "NOOP\r\n" {
		t.Fatalf("server got %q, want NOOP", got)
	}
	tr.serverSends("220 Ready\r\n200 NOOP ok.\r\n")
	tr.server.Close()
	tr.client.SetReadDeadline(time.Now().Add(stepTimeout))
	codes, err := replyCodes(tr.cr)
	if got := strings.Join(codes, " "); got != "220 502 200" || err != nil {
		t.Fatalf("client got replies %s (%v), want 220 502 200", got, err)
	}
}
