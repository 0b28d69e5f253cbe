package ftppassive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// TestVsftpdCurlActiveGlob: curl fetches 200 small files in one session in
// active mode (PORT, then EPRT), several times over, through the relay to
// vsftpd. Every file must arrive intact. Before the relay held the
// server's 150/226 back until its connection to curl's data port was up,
// curl saw a 226 while still waiting for that connection, gave the file up
// (exiting 0) and closed its port, and 2-8 % of the files went missing.
// slowClientLink makes every 20th connection the relay opens to an
// active-mode client's data port take 100 ms, as on a link with jitter.
// vsftpd's 226 follows its data by about 40 ms on loopback (the delayed
// ACK its lingering close waits for), so on a slow connection the 226
// reaches the client first unless the relay holds it back.
func slowClientLink(p *Proxy) {
	dial := p.dialClient
	var n atomic.Int64
	p.dialClient = func(ctx context.Context, from netip.Addr, to netip.AddrPort) (net.Conn, error) {
		if n.Add(1)%20 == 0 {
			time.Sleep(100 * time.Millisecond)
		}
		return dial(ctx, from, to)
	}
}

func TestVsftpdCurlActiveGlob(t *testing.T) {
	curl := needTool(t, "curl")
	v := startVsftpd(t, vsftpdOptions{})
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: interopRange}, slowClientLink)
	const files = 200
	sums := make([]string, files)
	for i := range files {
		data, sum := randomBytes(t, 1+i*37)
		v.put(t, fmt.Sprintf("glob/f%03d.bin", i), data)
		sums[i] = sum
	}
	const runs = 3
	for _, m := range curlModes[2:] { // PORT and EPRT
		t.Run(m.name, func(t *testing.T) {
			for r := range runs {
				dir := t.TempDir()
				args := append([]string{"-sS", "--max-time", "25"}, m.args...)
				args = append(args, "-o", filepath.Join(dir, "#1.bin"),
					fmt.Sprintf("ftp://%s/glob/f[000-%03d].bin", w.addr, files-1))
				start := time.Now()
				if out, err := run(t, 30*time.Second, curl, args...); err != nil {
					t.Fatalf("run %d: curl: %v: %s", r, err, out)
				}
				var missing, corrupt []int
				for i, want := range sums {
					got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%03d.bin", i)))
					switch {
					case err != nil:
						missing = append(missing, i)
					case sha256Hex(got) != want:
						corrupt = append(corrupt, i)
					}
				}
				if len(missing)+len(corrupt) > 0 {
					t.Fatalf("run %d: %d of %d files missing %v, %d corrupt %v", r, len(missing), files, missing, len(corrupt), corrupt)
				}
				t.Logf("run %d: %d files intact in %v", r, files, time.Since(start).Round(time.Millisecond))
			}
		})
	}
}

// slowClientDial makes every connection to an active-mode client's data
// port take 100 ms.
func slowClientDial(p *Proxy) {
	dial := p.dialClient
	p.dialClient = func(ctx context.Context, from netip.Addr, to netip.AddrPort) (net.Conn, error) {
		time.Sleep(100 * time.Millisecond)
		return dial(ctx, from, to)
	}
}

// activeSetup runs PORT for the client port cport and returns the relay's
// port the server is told to connect to.
func (tr *transcript) activeSetup(cport int) netip.AddrPort {
	tr.t.Helper()
	tr.clientSends(fmt.Sprintf("PORT 127,0,0,1,%d,%d\r\n", cport>>8, cport&0xFF))
	sent := tr.serverGets()
	ap, err := parsePORT(strings.TrimSpace(strings.TrimPrefix(sent, "PORT ")))
	if err != nil {
		tr.t.Fatalf("relay sent the server %q: %v", sent, err)
	}
	tr.serverSends("200 PORT command successful.\r\n")
	tr.clientGets()
	return ap
}

// TestActiveReplyWaitsForClientConnection: the server's 150 reaches the
// client only once the relay's connection to the client's data port is
// up, however slow that connection is.
func TestActiveReplyWaitsForClientConnection(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange}, slowClientDial)
	tr.login()
	ln, cport := tr.fakeData("CLIENT_DATA")
	ap := tr.activeSetup(cport)
	tr.clientSends("RETR f\r\n")
	tr.serverGets()
	s := dialTCP(t, ap.String())
	tr.serverSends("150 Opening data connection.\r\n")
	if got := tr.clientGets(); !strings.HasPrefix(got, "150 ") {
		t.Fatalf("client got %q, want the 150", got)
	}
	// The connection is in the accept queue already: no waiting for it.
	ln.SetDeadline(time.Now().Add(50 * time.Millisecond))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("the client got the 150 before its data connection: %v", err)
	}
	tr.transfer("server->client", s, c, 64<<10)
	tr.serverSends("226 Transfer complete.\r\n")
	if got := tr.clientGets(); !strings.HasPrefix(got, "226 ") {
		t.Fatalf("client got %q, want the 226", got)
	}
	tr.serverQuiet()
}

// TestActiveClientUnreachable: when the relay cannot connect to the
// client's data port, the client gets a 425 instead of the server's 150
// (and not the server's final reply after it), or a 426 instead of a 226
// that came without a 150; the session goes on in order.
func TestActiveClientUnreachable(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.login()
	dead := freePort(t) // nobody listens there
	for _, tc := range []struct{ server, want string }{
		{"150 Opening data connection.\r\n", "425 "},
		{"226 Transfer complete.\r\n", "426 "},
	} {
		ap := tr.activeSetup(dead)
		tr.clientSends("RETR f\r\n")
		tr.serverGets()
		s := dialTCP(t, ap.String())
		tr.serverSends(tc.server)
		if got := tr.clientGets(); !strings.HasPrefix(got, tc.want) {
			t.Fatalf("for the server's %q the client got %q, want %s", tc.server, got, tc.want)
		}
		// The relay closed the server's data connection.
		s.SetReadDeadline(time.Now().Add(stepTimeout))
		if n, err := io.Copy(io.Discard, s); n != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("server's data connection: %d bytes, %v; want it closed", n, err)
		}
		s.Close()
		if strings.HasPrefix(tc.server, "150") {
			tr.serverSends("426 Connection closed; transfer aborted.\r\n")
		}
		tr.clientSends("NOOP\r\n")
		tr.serverGets()
		tr.serverSends("200 NOOP ok.\r\n")
		if got := tr.clientGets(); got != "200 NOOP ok.\r\n" {
			t.Fatalf("after the failed transfer the client's NOOP got %q", got)
		}
	}
	st := tr.w.proxy.Stats()
	if st.DialFailures.Load() != 2 || st.DataFailed.Load() != 2 || st.DataOpened.Load() != 0 {
		t.Errorf("DialFailures %d DataFailed %d DataOpened %d, want 2 2 0",
			st.DialFailures.Load(), st.DataFailed.Load(), st.DataOpened.Load())
	}
}
