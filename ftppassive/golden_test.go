package ftppassive

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	testworld "github.com/edgerelay/relay/internal/world"
)

// fakeData opens the fake server's data listener; its port appears in the
// transcript as name.
func (tr *transcript) fakeData(name string) (*net.TCPListener, int) {
	ln := listenLoopback(tr.t)
	port := ln.Addr().(*net.TCPAddr).Port
	tr.aliasPort(port, name)
	return ln, port
}

// transfer moves n random bytes from src to dst, records whether they
// arrived intact, and closes both.
func (tr *transcript) transfer(what string, src, dst net.Conn, n int) {
	tr.t.Helper()
	data, sum := randomBytes(tr.t, n)
	wrote := make(chan error, 1)
	go func() {
		_, err := src.Write(data)
		src.Close()
		wrote <- err
	}()
	dst.SetReadDeadline(time.Now().Add(stepTimeout))
	got, err := io.ReadAll(dst)
	dst.Close()
	if werr := <-wrote; werr != nil || err != nil {
		tr.t.Fatalf("transfer %s: write %v, read %v", what, werr, err)
	}
	verdict := "intact"
	if sha256Hex(got) != sum {
		verdict = fmt.Sprintf("CORRUPT (%d bytes)", len(got))
		tr.t.Errorf("transfer %s: %s", what, verdict)
	}
	fmt.Fprintf(&tr.rec, "D  %s: %d bytes %s\n", what, n, verdict)
}

// epsvData opens a passive data connection through the relay with EPSV
// and returns the client's and the fake server's ends.
func (tr *transcript) epsvData() (client, server net.Conn) {
	tr.t.Helper()
	ln, port := tr.fakeData("SERVER_DATA")
	tr.clientSends("EPSV\r\n")
	tr.serverGets()
	tr.serverSends(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)\r\n", port))
	rp := tr.relayPort(tr.clientGets(), dataRange)
	c := dialTCP(tr.t, fmt.Sprintf("127.0.0.1:%d", rp))
	return c, acceptOne(tr.t, ln)
}

func acceptOne(t *testing.T, ln *net.TCPListener) net.Conn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(stepTimeout))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on %s: %v", ln.Addr(), err)
	}
	return c
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, stepTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

var dataRange = [2]uint16{31100, 31199}

// transcriptCases are the golden control-channel scenarios; each name is a
// file in testdata/.
var transcriptCases = []struct {
	name string
	cfg  Config
	run  func(tr *transcript)
}{
	{"pasv", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		ln, port := tr.fakeData("SERVER_DATA")
		tr.clientSends("PASV\r\n")
		tr.serverGets()
		// The server advertises an address nobody can reach; the relay
		// must dial the control connection's address instead.
		tr.serverSends(fmt.Sprintf("227 Entering Passive Mode (10,9,8,7,%d,%d).\r\n", port>>8, port&0xFF))
		rp := tr.relayPort(tr.clientGets(), dataRange)
		tr.clientSends("RETR f\r\n")
		tr.serverGets()
		tr.serverSends("150 Opening data connection.\r\n")
		tr.clientGets()
		c := dialTCP(tr.t, fmt.Sprintf("127.0.0.1:%d", rp))
		s := acceptOne(tr.t, ln)
		tr.transfer("server->client", s, c, 256<<10)
		tr.serverSends("226 Transfer complete.\r\n")
		tr.clientGets()
	}},
	{"pasv_multiline_no_parens", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		tr.clientSends("PASV\r\n")
		tr.serverGets()
		tr.serverSends("227-Entering Passive Mode\r\n227 =10,9,8,7,19,137\r\n")
		tr.relayPort(tr.clientGets(), dataRange)
		tr.serverQuiet()
	}},
	{"epsv", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		c, s := tr.epsvData()
		tr.transfer("client->server", c, s, 128<<10)
	}},
	{"epsv_refused_falls_back_to_pasv", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		ln, port := tr.fakeData("SERVER_DATA")
		tr.clientSends("EPSV\r\n")
		tr.serverGets()
		tr.serverSends("500 'EPSV': command not understood.\r\n")
		tr.serverGets() // the relay asks PASV instead
		tr.serverSends("227 Entering Passive Mode (10,9,8,7,19,137).\r\n")
		tr.relayPort(tr.clientGets(), dataRange)
		// Known now: the next EPSV goes to the server as PASV at once.
		tr.clientSends("EPSV\r\n")
		tr.serverGets()
		tr.serverSends(fmt.Sprintf("227 Entering Passive Mode (10,9,8,7,%d,%d).\r\n", port>>8, port&0xFF))
		rp := tr.relayPort(tr.clientGets(), dataRange)
		c := dialTCP(tr.t, fmt.Sprintf("127.0.0.1:%d", rp))
		s := acceptOne(tr.t, ln)
		tr.transfer("server->client", s, c, 64<<10)
	}},
	{"epsv_all", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		tr.clientSends("EPSV ALL\r\n")
		tr.clientGets()
		for _, cmd := range []string{"PASV\r\n", "PORT 127,0,0,1,200,1\r\n", "EPRT |1|127.0.0.1|51201|\r\n"} {
			tr.clientSends(cmd)
			tr.clientGets()
		}
		tr.clientSends("EPSV\r\n")
		tr.serverGets()
		tr.serverSends("229 Entering Extended Passive Mode (|||5001|)\r\n")
		tr.relayPort(tr.clientGets(), dataRange)
		tr.serverQuiet()
	}},
	{"epsv_protocol_argument", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		tr.clientSends("EPSV 2\r\n")
		tr.clientGets()
		tr.clientSends("EPSV 1\r\n")
		tr.serverGets()
		tr.serverSends("229 Entering Extended Passive Mode (|||5001|)\r\n")
		tr.relayPort(tr.clientGets(), dataRange)
	}},
	{"port", Config{DataPorts: dataRange}, func(tr *transcript) { activeCase(tr, "PORT") }},
	{"eprt", Config{DataPorts: dataRange}, func(tr *transcript) { activeCase(tr, "EPRT") }},
	{"port_refused_by_server", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		ln, port := tr.fakeData("CLIENT_DATA")
		_ = ln
		tr.clientSends(fmt.Sprintf("PORT 127,0,0,1,%d,%d\r\n", port>>8, port&0xFF))
		sent := tr.serverGets()
		tr.serverSends("500 Illegal PORT command.\r\n")
		tr.clientGets()
		// The relay's port is closed again: nothing listens there.
		ap, err := parsePORT(strings.TrimSpace(strings.TrimPrefix(sent, "PORT ")))
		if err != nil {
			tr.t.Fatalf("relay sent %q", sent)
		}
		testworld.Eventually(tr.w.t, "the refused PORT's data port to close", func() bool {
			return tr.w.proxy.Stats().DataPortsInUse.Load() == 0
		})
		if c, err := net.DialTimeout("tcp", ap.String(), stepTimeout); err == nil {
			c.Close()
			tr.t.Fatalf("relay port %s still accepts after the server refused PORT", ap)
		}
	}},
	{"bounce_refused", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		for _, cmd := range []string{
			"PORT 127,0,0,2,200,1\r\n",       // another host
			"PORT 127,0,0,1,0,21\r\n",        // a privileged port
			"EPRT |1|127.0.0.1|80|\r\n",      // a privileged port
			"EPRT |2|::1|50000|\r\n",         // another address family
			"EPRT |3|127.0.0.1|50000|\r\n",   // an unknown protocol
			"PORT 1,2,3\r\n",                 // nonsense
			"EPRT 127.0.0.1:5000\r\n",        // nonsense
			"LPRT 4,4,127,0,0,1,2,200,1\r\n", // long addresses are not relayed
			"PORT 127,0,0,1,300,1\r\n",       // octet out of range
			"port 10,0,0,1,200,1 \r\n",       // lower case is still PORT
		} {
			tr.clientSends(cmd)
			tr.clientGets()
		}
		tr.serverQuiet()
		if n := tr.w.proxy.Stats().BouncesRefused.Load(); n != 5 {
			tr.t.Errorf("BouncesRefused = %d, want 5", n)
		}
		tr.w.logs.Wait(tr.t, "RFC 2577", "127.0.0.2:51201")
	}},
	{"pipelined", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		tr.clientSends("NOOP\r\nPASV\r\nEPSV ALL\r\nPASV\r\nTYPE I\r\n")
		tr.serverGets()
		tr.serverGets()
		tr.serverGets()
		tr.serverSends("200 NOOP ok.\r\n227 Entering Passive Mode (10,9,8,7,19,137).\r\n200 Switching to Binary mode.\r\n")
		for range 5 {
			tr.clientGets()
		}
		tr.serverQuiet()
	}},
	{"telnet_abor", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		tr.clientSends("\xff\xf4\xff\xf2ABOR\r\n")
		tr.serverGets()
		tr.serverSends("225 No transfer to ABOR.\r\n")
		tr.clientGets()
		tr.clientSends("STOR a\xff\xffb\r\n")
		tr.serverGets()
		tr.serverSends("550 No.\r\n")
		tr.clientGets()
	}},
	{"auth_tls_opaque", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.serverSends("220 Ready\r\n")
		tr.clientGets()
		tr.clientSends("AUTH TLS\r\n")
		tr.serverGets()
		tr.serverSends("234 Proceed with negotiation.\r\n")
		tr.clientGets()
		// From here on the bytes are TLS: nothing is parsed or rewritten.
		hello := "\x16\x03\x01\x00\x05PASV\r\n\xff\xf4"
		tr.clientSends(hello)
		tr.readN("S<", len(hello))
		reply := "227 Entering Passive Mode (10,9,8,7,19,137).\r\n"
		tr.serverSends(reply)
		tr.readN("C<", len(reply))
		tr.w.logs.Wait(tr.t, "1:1 tcp range listener")
	}},
	{"bad_227", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		tr.clientSends("PASV\r\n")
		tr.serverGets()
		tr.serverSends("227 Entering Passive Mode (10,9,8,7,19).\r\n")
		tr.clientGets()
		tr.clientSends("PASV\r\n")
		tr.serverGets()
		tr.serverSends("227 Entering Passive Mode (10,9,8,7,0,0).\r\n")
		tr.clientGets()
		tr.serverQuiet()
	}},
	{"public_ip", Config{DataPorts: dataRange, PublicIP: netip.MustParseAddr("198.51.100.7")}, func(tr *transcript) {
		tr.login()
		ln, port := tr.fakeData("SERVER_DATA")
		tr.clientSends("PASV\r\n")
		tr.serverGets()
		tr.serverSends(fmt.Sprintf("227 Entering Passive Mode (10,9,8,7,%d,%d).\r\n", port>>8, port&0xFF))
		reply := tr.clientGets()
		ap, err := parse227(reply)
		if err != nil || ap.Addr() != netip.MustParseAddr("198.51.100.7") {
			tr.t.Fatalf("227 %q does not carry the public IP", reply)
		}
		// Behind the NAT that owns the public IP, the client arrives at
		// the relay's own address.
		c := dialTCP(tr.t, fmt.Sprintf("127.0.0.1:%d", ap.Port()))
		s := acceptOne(tr.t, ln)
		tr.transfer("server->client", s, c, 32<<10)
	}},
	{"trust_server_ip", Config{DataPorts: dataRange, TrustServerIP: true}, func(tr *transcript) {
		tr.login()
		// The server's data port is on another address than its control
		// connection; only with TrustServerIP does the relay go there.
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)})
		if err != nil {
			tr.t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		tr.alias = append(tr.alias, fmt.Sprintf("127,0,0,3,%d,%d", port>>8, port&0xFF), "127,0,0,3,SERVER_DATA")
		tr.clientSends("PASV\r\n")
		tr.serverGets()
		tr.serverSends(fmt.Sprintf("227 Entering Passive Mode (127,0,0,3,%d,%d).\r\n", port>>8, port&0xFF))
		rp := tr.relayPort(tr.clientGets(), dataRange)
		c := dialTCP(tr.t, fmt.Sprintf("127.0.0.1:%d", rp))
		s := acceptOne(tr.t, ln)
		tr.transfer("server->client", s, c, 32<<10)
	}},
	{"ipv6", Config{DataPorts: dataRange, Listen: []string{"[::1]:0"}}, func(tr *transcript) {
		tr.login()
		tr.clientSends("PASV\r\n") // 227 cannot carry an IPv6 address
		tr.clientGets()
		tr.clientSends("EPSV 1\r\n")
		tr.clientGets()
		ln, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
		if err != nil {
			tr.t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		tr.aliasPort(port, "SERVER_DATA")
		tr.clientSends("EPSV 2\r\n")
		tr.serverGets()
		tr.serverSends(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)\r\n", port))
		rp := tr.relayPort(tr.clientGets(), dataRange)
		c := dialTCP(tr.t, fmt.Sprintf("[::1]:%d", rp))
		s := acceptOne(tr.t, ln)
		tr.transfer("client->server", c, s, 32<<10)

		cl, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
		if err != nil {
			tr.t.Fatal(err)
		}
		defer cl.Close()
		cport := cl.Addr().(*net.TCPAddr).Port
		tr.aliasPort(cport, "CLIENT_DATA")
		tr.clientSends(fmt.Sprintf("EPRT |2|::1|%d|\r\n", cport))
		sent := tr.serverGets()
		ap, err := parseEPRT(strings.TrimSpace(strings.TrimPrefix(sent, "EPRT ")))
		if err != nil {
			tr.t.Fatalf("relay sent %q", sent)
		}
		tr.serverSends("200 EPRT command successful.\r\n")
		tr.clientGets()
		s = dialTCP(tr.t, ap.String())
		c = acceptOne(tr.t, cl)
		tr.transfer("server->client", s, c, 32<<10)
	}},
	{"greeting_with_local_answer", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.serverSends("220-Welcome\r\n")
		tr.clientGets()
		tr.clientSends("EPSV ALL\r\n")
		tr.serverSends("220 Ready\r\n")
		tr.clientGets()
		tr.clientGets()
		tr.serverQuiet()
	}},
	{"client_line_too_long", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		tr.rec.WriteString("C> <9000 bytes of 'x', no line end>\n")
		tr.client.Write([]byte(strings.Repeat("x", 9000)))
		tr.clientGets()
		tr.clientGets()
		tr.w.logs.Wait(tr.t, "client sent a control line longer than the limit")
	}},
	{"server_line_too_long", Config{DataPorts: dataRange}, func(tr *transcript) {
		tr.login()
		tr.clientSends("STAT\r\n")
		tr.serverGets()
		tr.rec.WriteString("S> <9000 bytes of '2', no line end>\n")
		tr.server.Write([]byte(strings.Repeat("2", 9000)))
		tr.clientGets()
		tr.clientGets()
		tr.w.logs.Wait(tr.t, "server sent a reply line")
	}},
}

// activeCase: the client asks for active mode with its own address, the
// relay listens on its server side and connects the two.
func activeCase(tr *transcript, verb string) {
	tr.login()
	ln, port := tr.fakeData("CLIENT_DATA")
	cmd := fmt.Sprintf("PORT 127,0,0,1,%d,%d\r\n", port>>8, port&0xFF)
	if verb == "EPRT" {
		cmd = fmt.Sprintf("EPRT |1|127.0.0.1|%d|\r\n", port)
	}
	tr.clientSends(cmd)
	sent := tr.serverGets()
	ap, err := parsePORT(strings.TrimSpace(strings.TrimPrefix(sent, "PORT ")))
	if err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		tr.t.Fatalf("relay sent the server %q (%v)", sent, err)
	}
	if ap.Port() < dataRange[0] || ap.Port() > dataRange[1] {
		tr.t.Fatalf("relay's active port %d outside the data range", ap.Port())
	}
	tr.serverSends("200 PORT command successful.\r\n")
	tr.clientGets()
	tr.clientSends("RETR f\r\n")
	tr.serverGets()
	s := dialTCP(tr.t, ap.String()) // the server connects to the relay
	c := acceptOne(tr.t, ln)        // the relay connects to the client
	if from := addrPortOf(c.RemoteAddr()).Addr(); from != netip.MustParseAddr("127.0.0.1") {
		tr.t.Errorf("active data reached the client from %s, want the control address", from)
	}
	tr.serverSends("150 Opening data connection.\r\n")
	tr.clientGets()
	tr.transfer("server->client", s, c, 200<<10)
	tr.serverSends("226 Transfer complete.\r\n")
	tr.clientGets()
}

func TestTranscripts(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	for _, tc := range transcriptCases {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTranscript(t, tc.cfg)
			tc.run(tr)
			tr.check(tc.name)
		})
	}
}

// TestTranscriptExhaustedRange: with the only data port taken, PASV gets a
// 425 and the session goes on; once the port is free, PASV works again.
func TestTranscriptExhaustedRange(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	blocker := listenLoopback(t)
	port := uint16(blocker.Addr().(*net.TCPAddr).Port)
	r := [2]uint16{port, port}
	tr := newTranscript(t, Config{DataPorts: r})
	tr.aliasPort(int(port), "THE_ONLY_PORT")
	tr.login()
	tr.clientSends("PASV\r\n")
	tr.serverGets()
	tr.serverSends("227 Entering Passive Mode (10,9,8,7,19,137).\r\n")
	tr.clientGets()
	tr.serverQuiet()
	blocker.Close()
	for range 2 { // the second PASV replaces the first's unused port
		tr.clientSends("PASV\r\n")
		tr.serverGets()
		tr.serverSends("227 Entering Passive Mode (10,9,8,7,19,137).\r\n")
		tr.relayPort(tr.clientGets(), r)
	}
	tr.check("exhausted_range")
	if n := tr.w.proxy.Stats().DataFailed.Load(); n < 2 {
		t.Errorf("DataFailed = %d, want >= 2 (no port, then one replaced)", n)
	}
}
