package ftppassive

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// transcript drives one control session through the relay: the test plays
// both the client and a scripted FTP server, and every line either side
// sends or receives is recorded. The record is compared with
// testdata/<name>.golden (go test -run TestTranscripts -update rewrites
// them). Relay data ports change from run to run and are normalised to
// RELAY_PORT; ports the test itself opened are aliased by name.
type transcript struct {
	t      *testing.T
	w      *world
	client net.Conn
	cr     *bufio.Reader
	server net.Conn
	sr     *bufio.Reader
	rec    strings.Builder
	alias  []string // old, new pairs applied before the regexps
}

const stepTimeout = 5 * time.Second

func newTranscript(t *testing.T, cfg Config, prepare ...func(*Proxy)) *transcript {
	t.Helper()
	up := listenLoopback(t)
	if len(cfg.Listen) > 0 && strings.HasPrefix(cfg.Listen[0], "[::1]") {
		up.Close()
		ln, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Cleanup(func() { ln.Close() })
		up = ln
	}
	cfg.Upstreams = [][]string{{up.Addr().String()}}
	w := startProxy(t, cfg, prepare...)
	client, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	up.SetDeadline(time.Now().Add(stepTimeout))
	server, err := up.Accept()
	if err != nil {
		t.Fatalf("the relay did not connect to the fake server: %v", err)
	}
	t.Cleanup(func() { server.Close() })
	return &transcript{t: t, w: w, client: client, cr: bufio.NewReader(client), server: server, sr: bufio.NewReader(server)}
}

func (tr *transcript) note(dir, s string) {
	tr.rec.WriteString(dir + " " + strconv.Quote(s) + "\n")
}

// clientSends writes raw bytes from the client.
func (tr *transcript) clientSends(s string) {
	tr.t.Helper()
	tr.note("C>", s)
	if _, err := tr.client.Write([]byte(s)); err != nil {
		tr.t.Fatalf("client write: %v", err)
	}
}

// serverSends writes raw bytes from the server.
func (tr *transcript) serverSends(s string) {
	tr.t.Helper()
	tr.note("S>", s)
	if _, err := tr.server.Write([]byte(s)); err != nil {
		tr.t.Fatalf("server write: %v", err)
	}
}

// clientGets reads one line at the client ("EOF" when the relay closed).
func (tr *transcript) clientGets() string {
	tr.t.Helper()
	return tr.readLine("C<", tr.client, tr.cr)
}

// serverGets reads one line at the server.
func (tr *transcript) serverGets() string {
	tr.t.Helper()
	return tr.readLine("S<", tr.server, tr.sr)
}

func (tr *transcript) readLine(dir string, c net.Conn, r *bufio.Reader) string {
	tr.t.Helper()
	c.SetReadDeadline(time.Now().Add(stepTimeout))
	line, err := r.ReadString('\n')
	if err == io.EOF && line == "" {
		tr.rec.WriteString(dir + " EOF\n")
		return ""
	}
	if err != nil {
		tr.t.Fatalf("%s read: %v (got %q)\nso far:\n%s", dir, err, line, tr.rec.String())
	}
	tr.note(dir, line)
	return line
}

// readN reads exactly n raw bytes (for the opaque phase after AUTH TLS).
func (tr *transcript) readN(dir string, n int) string {
	tr.t.Helper()
	c, r := tr.client, tr.cr
	if dir == "S<" {
		c, r = tr.server, tr.sr
	}
	c.SetReadDeadline(time.Now().Add(stepTimeout))
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		tr.t.Fatalf("%s read %d bytes: %v", dir, n, err)
	}
	tr.note(dir, string(b))
	return string(b)
}

// serverQuiet asserts the relay sent the server nothing more: a NOOP from
// the client must be the very next line the server sees.
func (tr *transcript) serverQuiet() {
	tr.t.Helper()
	tr.clientSends("NOOP\r\n")
	if got := tr.serverGets(); got != "NOOP\r\n" {
		tr.t.Fatalf("server got %q before the NOOP", got)
	}
	tr.serverSends("200 NOOP ok.\r\n")
	tr.clientGets()
}

// aliasPort records that port is the test's own port called name.
func (tr *transcript) aliasPort(port int, name string) {
	tr.alias = append(tr.alias,
		fmt.Sprintf("127,0,0,1,%d,%d", port>>8, port&0xFF), "127,0,0,1,"+name,
		fmt.Sprintf("10,9,8,7,%d,%d", port>>8, port&0xFF), "10,9,8,7,"+name,
		fmt.Sprintf("|%d|", port), "|"+name+"|",
	)
}

// login runs the greeting and USER/PASS.
func (tr *transcript) login() {
	tr.t.Helper()
	tr.serverSends("220-Welcome to the fake server\r\n220 Ready\r\n")
	tr.clientGets()
	tr.clientGets()
	tr.clientSends("USER u\r\n")
	tr.serverGets()
	tr.serverSends("331 Password please.\r\n")
	tr.clientGets()
	tr.clientSends("PASS p\r\n")
	tr.serverGets()
	tr.serverSends("230 Logged in.\r\n")
	tr.clientGets()
}

var relayPortRE = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`127,0,0,1,\d+,\d+`), "127,0,0,1,RELAY_PORT"},
	{regexp.MustCompile(`198,51,100,7,\d+,\d+`), "198,51,100,7,RELAY_PORT"},
	{regexp.MustCompile(`\|\|\|\d+\|`), "|||RELAY_PORT|"},
	{regexp.MustCompile(`\|127\.0\.0\.1\|\d+\|`), "|127.0.0.1|RELAY_PORT|"},
	{regexp.MustCompile(`\|::1\|\d+\|`), "|::1|RELAY_PORT|"},
}

// check compares the record with the golden file.
func (tr *transcript) check(name string) {
	tr.t.Helper()
	got := tr.rec.String()
	for i := 0; i+1 < len(tr.alias); i += 2 {
		got = strings.ReplaceAll(got, tr.alias[i], tr.alias[i+1])
	}
	// Only what the relay wrote (C< and S< lines) carries relay ports.
	lines := strings.SplitAfter(got, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "C<") || strings.HasPrefix(l, "S<") {
			for _, r := range relayPortRE {
				l = r.re.ReplaceAllString(l, r.with)
			}
			lines[i] = l
		}
	}
	got = strings.Join(lines, "")
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			tr.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tr.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tr.t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(want, []byte(got)) {
		tr.t.Errorf("transcript differs from %s\n--- got:\n%s--- want:\n%s", path, got, want)
	}
}

// relayPort extracts the relay's data port from a 227 or 229 reply and
// checks it lies in the configured range.
func (tr *transcript) relayPort(reply string, r [2]uint16) int {
	tr.t.Helper()
	var port int
	if strings.HasPrefix(reply, "227") {
		ap, err := parse227(reply)
		if err != nil || ap.Addr().String() != "127.0.0.1" {
			tr.t.Fatalf("relay sent %q: %v", reply, err)
		}
		port = int(ap.Port())
	} else {
		p, err := parse229(reply)
		if err != nil {
			tr.t.Fatalf("relay sent %q: %v", reply, err)
		}
		port = int(p)
	}
	if r[0] != 0 && (port < int(r[0]) || port > int(r[1])) {
		tr.t.Fatalf("relay data port %d outside %d-%d", port, r[0], r[1])
	}
	return port
}
