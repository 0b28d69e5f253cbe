package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/internal/world"

	"github.com/edgerelay/relay/config"
)

// freePort returns a loopback port for network ("tcp" or "udp") that the
// daemon can bind by number (tests cannot use port 0: a reload must see the
// same spec again). A TCP port comes from world.ReserveTCPPort; a UDP port
// is one the kernel gave a moment ago, never returned twice.
func freePort(t testing.TB, network string) int {
	t.Helper()
	if network == "tcp" {
		return world.ReserveTCPPort(t)
	}
	for range 100 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
	t.Fatal("no fresh port in 100 tries")
	return 0
}

// adminOn is an admin section on a reserved loopback port. The config
// refuses port 0 (an endpoint nobody could find), so a test names one; a
// test that reloads renders the same section each time, or the endpoint
// moves.
func adminOn(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("admin: {listen: \"127.0.0.1:%d\"}\n", freePort(t, "tcp"))
}

// handedOut holds the UDP ports freePort returned (test-only state).
var handedOut sync.Map

// tcpEcho is a backend that echoes every line it gets, prefixed by tag, and
// counts the connections it accepted.
type tcpEcho struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func newTCPEcho(t *testing.T, tag string) *tcpEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &tcpEcho{ln: ln}
	e.wg.Add(1)
	go e.serve(tag)
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func (e *tcpEcho) serve(tag string) {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.accepted.Add(1)
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := fmt.Fprintf(c, "%s:%s\n", tag, sc.Text()); err != nil {
					return
				}
			}
		}()
	}
}

func (e *tcpEcho) addr() string { return e.ln.Addr().String() }

// udpEcho answers every datagram with tag + payload.
type udpEcho struct {
	pc   net.PacketConn
	done chan struct{}
}

func newUDPEcho(t *testing.T, tag string) *udpEcho {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &udpEcho{pc: pc, done: make(chan struct{})}
	go e.serve(tag)
	t.Cleanup(func() { pc.Close(); <-e.done })
	return e
}

func (e *udpEcho) serve(tag string) {
	defer close(e.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := e.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = e.pc.WriteTo(append([]byte(tag+":"), buf[:n]...), from)
	}
}

func (e *udpEcho) addr() string { return e.pc.LocalAddr().String() }

// lineConn is a client connection that sends a line and reads one back.
type lineConn struct {
	net.Conn
	r *bufio.Reader
}

func dialLine(t *testing.T, src, addr string) (*lineConn, error) {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// roundTrip writes msg and returns the line that comes back, or an error
// (EOF when the relay closed the connection).
func (c *lineConn) roundTrip(msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// udpRoundTrip sends msg from a socket bound to src and waits for a reply.
func udpRoundTrip(c *net.UDPConn, to, msg string, wait time.Duration) (string, error) {
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		return "", err
	}
	if _, err := c.WriteToUDP([]byte(msg), ua); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFromUDP(buf)
	return string(buf[:n]), err
}

func udpClient(t *testing.T, src string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// relayWorld is a daemon started from a config file in a temp folder.
type relayWorld struct {
	t    testing.TB
	dir  string
	logs *world.LogBuffer
	d    *Daemon
}

// writeFile writes name in the world's folder.
func (w *relayWorld) writeFile(name, text string) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, name), []byte(text), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// startWorld writes relay.yaml (and any extra files) and starts a daemon on it.
func startWorld(t testing.TB, yaml string, files map[string]string) *relayWorld {
	t.Helper()
	return startWorldIn(t, t.TempDir(), yaml, files)
}

// startWorldIn is startWorld in dir, which may hold files already.
func startWorldIn(t testing.TB, dir, yaml string, files map[string]string) *relayWorld {
	t.Helper()
	return startWorldWith(t, dir, yaml, files, Options{})
}

// startWorldWith is startWorldIn with opts; it sets Load, Log and Levels.
func startWorldWith(t testing.TB, dir, yaml string, files map[string]string, opts Options) *relayWorld {
	t.Helper()
	w := &relayWorld{t: t, dir: dir, logs: &world.LogBuffer{}}
	w.writeFile("relay.yaml", yaml)
	for name, text := range files {
		w.writeFile(name, text)
	}
	path := filepath.Join(w.dir, "relay.yaml")
	load := func() (*config.Config, error) {
		return config.Load(config.LoadOptions{Path: path, Environ: []string{}})
	}
	cfg, err := load()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	log, levels := NewLogger(w.logs, "json", zerolog.DebugLevel)
	opts.Load, opts.Log, opts.Levels = load, log, levels
	w.d = New(cfg, opts)
	if err := w.d.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = w.d.Close() })
	return w
}
