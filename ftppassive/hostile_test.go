package ftppassive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// TestPassivePortBelow1024Refused: a server whose 227/229 names a data
// port below 1024 (its own SMTP port, say) is not dialled: the client gets
// a 425, and the refusal is logged and counted.
func TestPassivePortBelow1024Refused(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.login()
	for _, tc := range []struct{ cmd, reply string }{
		{"PASV\r\n", "227 Entering Passive Mode (127,0,0,1,0,25).\r\n"},
		{"EPSV\r\n", "229 Entering Extended Passive Mode (|||25|)\r\n"},
		{"PASV\r\n", "227 Entering Passive Mode (127,0,0,1,3,255).\r\n"}, // 1023
	} {
		tr.clientSends(tc.cmd)
		tr.serverGets()
		tr.serverSends(tc.reply)
		if got := tr.clientGets(); !strings.HasPrefix(got, "425 ") {
			t.Fatalf("for %q the client got %q, want a 425", tc.reply, got)
		}
	}
	tr.serverQuiet()
	tr.w.logs.Wait(t, "server's passive reply names a data port below 1024", `"port":25`)
	st := tr.w.proxy.Stats()
	if st.PassivePortsRefused.Load() != 3 || st.DataPortsInUse.Load() != 0 || st.DialFailures.Load() != 0 {
		t.Errorf("PassivePortsRefused %d DataPortsInUse %d DialFailures %d, want 3 0 0",
			st.PassivePortsRefused.Load(), st.DataPortsInUse.Load(), st.DialFailures.Load())
	}
}

// leakedAddress hunts everything a client received for a passive reply
// that is not the relay's own: every piece between CRs and LFs (some
// clients end lines at a bare CR), leading blanks trimmed, that a lenient
// client would parse as a 227 or 229. It returns the first such piece.
func leakedAddress(received []byte) (string, bool) {
	pieces := bytes.FieldsFunc(received, func(r rune) bool { return r == '\r' || r == '\n' })
	for _, p := range pieces {
		p = bytes.TrimLeft(p, " \t")
		if len(p) < 3 {
			continue
		}
		var port uint16
		switch string(p[:3]) {
		case "227":
			ap, err := parse227(string(p))
			if err != nil {
				continue
			}
			if ap.Addr().String() != "127.0.0.1" {
				return string(p), true
			}
			port = ap.Port()
		case "229":
			var err error
			if port, err = parse229(string(p)); err != nil {
				continue
			}
		default:
			continue
		}
		if port < dataRange[0] || port > dataRange[1] {
			return string(p), true
		}
	}
	return "", false
}

// hostileSession runs one session against a server that sends serverSays
// after its greeting and hangs up; the client pipelines PASV, EPSV and
// NOOP. It returns everything the client received. The relay dials no
// data connection: a hostile reply may name any port on the box.
func hostileSession(t *testing.T, serverSays []byte) []byte {
	t.Helper()
	var dials atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) > 1 {
			return nil, errors.New("test: no data dials")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	tr := newTranscript(t, Config{DataPorts: dataRange, Dial: dial})
	tr.client.Write([]byte("PASV\r\nEPSV\r\nNOOP\r\n"))
	tr.server.Write([]byte("220 Hostile server ready.\r\n"))
	tr.server.Write(serverSays)
	tr.server.Close()
	tr.client.SetReadDeadline(time.Now().Add(stepTimeout))
	got, err := io.ReadAll(tr.client)
	if err != nil {
		t.Fatalf("client read: %v (got %q)", err, got)
	}
	return got
}

// hostileReplies hide the server's own data address (127,0,0,1,0,21 or
// port 2121) from a relay that reads replies line by line.
var hostileReplies = []string{
	// Bare CR line endings.
	"200 Fine.\r227 Entering Passive Mode (127,0,0,1,8,73).\r\n",
	"227 Entering Passive Mode (127,0,0,1,8,73).\r",
	"229 Entering Extended Passive Mode (|||2121|)\r229 (|||2121|)\r\n",
	"150-Here\r229 Entering Extended Passive Mode (|||2121|)\r\n150 Go.\r\n",
	// Nested in a multi-line reply of another code.
	"211-Status\r\n227 Entering Passive Mode (127,0,0,1,8,73).\r\n211 End.\r\n",
	"150-Hi\r\n229 Entering Extended Passive Mode (|||2121|)\r\n 227 (127,0,0,1,8,73)\r\n150 Go.\r\n",
	"220-More greeting\r\n227-(127,0,0,1,8,73)\r\n220 Done.\r\n",
	// Replies with nobody asking.
	"227 Entering Passive Mode (127,0,0,1,8,73).\r\n227 Entering Passive Mode (127,0,0,1,8,73).\r\n227 (127,0,0,1,8,73)\r\n229 (|||2121|)\r\n",
	// A refusal of the PASV with the address inside.
	"500-No\r\n227 Entering Passive Mode (127,0,0,1,8,73).\r\n500 No.\r\n",
	// A lenient client takes the first three digits.
	"227x(127,0,0,1,8,73)\r\n",
}

// TestServerAddressNeverReachesClient: however the server encodes a
// passive reply, no line the client can parse names the server's address.
func TestServerAddressNeverReachesClient(t *testing.T) {
	for i, reply := range hostileReplies {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got := hostileSession(t, []byte(reply))
			if leak, ok := leakedAddress(got); ok {
				t.Fatalf("the client got the server's address in %q; all it got:\n%q", leak, got)
			}
		})
	}
}

// FuzzServerReplies: whatever a server sends, nothing the client receives
// carries a passive reply other than the relay's own.
func FuzzServerReplies(f *testing.F) {
	for _, r := range hostileReplies {
		f.Add([]byte(r))
	}
	f.Add([]byte("227 Entering Passive Mode (127,0,0,1,8,73).\r\n229 (|||2121|)\r\n200 ok\r\n"))
	f.Fuzz(func(t *testing.T, serverSays []byte) {
		if len(serverSays) > 4*maxLine {
			t.Skip()
		}
		got := hostileSession(t, serverSays)
		if leak, ok := leakedAddress(got); ok {
			t.Fatalf("the client got %q from the server's %q; all it got:\n%q", leak, serverSays, got)
		}
	})
}
