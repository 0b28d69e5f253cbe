package ftppassive

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawFTP is a minimal FTP client for tests that need to do what real
// clients will not: connect to a data port from a foreign address, send
// bounce PORTs, hold a passive port open.
type rawFTP struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dialRaw connects to addr (from local, if given), reads the greeting and
// logs in anonymously.
func dialRaw(t *testing.T, addr string) *rawFTP {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, stepTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	f := &rawFTP{t: t, c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	if code, text := f.reply(); code != 220 {
		t.Fatalf("greeting: %d %s", code, text)
	}
	f.expect("USER anonymous", 331, 230)
	f.expect("PASS x@example.com", 230)
	f.expect("TYPE I", 200)
	return f
}

// reply reads one complete reply (multi-line aware).
func (f *rawFTP) reply() (int, string) {
	f.t.Helper()
	f.c.SetReadDeadline(time.Now().Add(stepTimeout))
	var all strings.Builder
	first := ""
	for {
		line, err := f.r.ReadString('\n')
		if err != nil {
			f.t.Fatalf("reading reply: %v (got %q)", err, all.String()+line)
		}
		all.WriteString(line)
		if first == "" {
			first = line
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			break
		}
		if strings.HasPrefix(line, first[:3]+" ") {
			break
		}
	}
	code, err := strconv.Atoi(first[:3])
	if err != nil {
		f.t.Fatalf("bad reply %q", all.String())
	}
	return code, all.String()
}

// cmd sends one command and returns the reply.
func (f *rawFTP) cmd(line string) (int, string) {
	f.t.Helper()
	if _, err := f.c.Write([]byte(line + "\r\n")); err != nil {
		f.t.Fatalf("send %q: %v", line, err)
	}
	return f.reply()
}

// expect sends a command and fails unless the reply code is one of codes.
func (f *rawFTP) expect(line string, codes ...int) string {
	f.t.Helper()
	code, text := f.cmd(line)
	for _, c := range codes {
		if code == c {
			return text
		}
	}
	f.t.Fatalf("%s: got %q, want %v", line, text, codes)
	return ""
}

// pasv sends PASV and returns the advertised address.
func (f *rawFTP) pasv() netip.AddrPort {
	f.t.Helper()
	text := f.expect("PASV", 227)
	ap, err := parse227(text)
	if err != nil {
		f.t.Fatalf("227 %q: %v", text, err)
	}
	return ap
}

// retr downloads name over the data connection d (already connected).
func (f *rawFTP) retr(name string, d io.ReadCloser) []byte {
	f.t.Helper()
	f.expect("RETR "+name, 150, 125)
	if c, ok := d.(net.Conn); ok {
		c.SetReadDeadline(time.Now().Add(stepTimeout))
	}
	got, err := io.ReadAll(d)
	d.Close()
	if err != nil {
		f.t.Fatalf("RETR %s: data: %v", name, err)
	}
	if code, text := f.reply(); code != 226 {
		f.t.Fatalf("RETR %s: %q", name, text)
	}
	return got
}

// dialFrom connects to addr from the local IP from.
func dialFrom(t *testing.T, from string, addr netip.AddrPort) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{Timeout: stepTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return d.Dial("tcp", addr.String())
}

// run runs a peer program with a deadline and returns its combined output.
func run(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
