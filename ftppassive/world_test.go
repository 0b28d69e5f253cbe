package ftppassive

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts in testdata/")

// world is the relay under test: a Proxy on a loopback port 0, serving
// until the test ends, with its log captured.
type world struct {
	t     *testing.T
	proxy *Proxy
	addr  string // the relay's control address
	logs  *logBuffer
}

// startProxy starts a Proxy with cfg (Listen defaults to 127.0.0.1:0) and
// closes it when the test ends, checking that Serve returned ErrClosed and
// that every data port went back to the pool.
func startProxy(t *testing.T, cfg Config) *world {
	t.Helper()
	logs := newLogBuffer()
	cfg.Log = zerolog.New(logs).Level(zerolog.DebugLevel)
	if cfg.Name == "" {
		cfg.Name = "ftp-test"
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	p, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve() }()
	t.Cleanup(func() {
		p.Close()
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
		if n := p.Stats().DataPortsInUse.Load(); n != 0 {
			t.Errorf("DataPortsInUse = %d after Close, want 0", n)
		}
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	})
	return &world{t: t, proxy: p, addr: p.Addrs()[0].String(), logs: logs}
}

// logBuffer collects log lines and wakes waiters on each write.
type logBuffer struct {
	mu      sync.Mutex // guards the following
	buf     bytes.Buffer
	written chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{written: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.written)
	l.written = make(chan struct{})
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor waits until the log holds a line containing every one of parts.
func (l *logBuffer) waitFor(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		text, written := l.buf.String(), l.written
		l.mu.Unlock()
		for _, line := range strings.Split(text, "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		select {
		case <-written:
		case <-deadline:
			t.Fatalf("no log line with %q; log:\n%s", parts, text)
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// randomBytes returns n random bytes and their SHA-256 in hex.
func randomBytes(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b, sha256Hex(b)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// waitUntil waits for cond, re-checking whenever the relay logs a line
// (every state change the tests wait for is logged) and at most every
// 20ms as a backstop for counters that change without a log line.
func (w *world) waitUntil(what string, cond func() bool) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		w.logs.mu.Lock()
		written := w.logs.written
		w.logs.mu.Unlock()
		select {
		case <-written:
		case <-tick.C:
		case <-ctx.Done():
			w.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// listenLoopback opens a TCP listener on 127.0.0.1:0 closed at test end.
func listenLoopback(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
