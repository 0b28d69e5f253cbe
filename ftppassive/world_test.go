package ftppassive

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"net"
	"testing"

	"github.com/rs/zerolog"

	// Named apart from this package's own world type, the relay under test.
	testworld "github.com/edgerelay/relay/internal/world"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts in testdata/")

// world is the relay under test: a Proxy on a loopback port 0, serving
// until the test ends, with its log captured.
type world struct {
	t     *testing.T
	proxy *Proxy
	addr  string // the relay's control address
	logs  *testworld.LogBuffer
}

// startProxy starts a Proxy with cfg (Listen defaults to 127.0.0.1:0) and
// closes it when the test ends, checking that Serve returned ErrClosed and
// that every data port went back to the pool. prepare, if given, adjusts
// the Proxy before it serves.
func startProxy(t *testing.T, cfg Config, prepare ...func(*Proxy)) *world {
	t.Helper()
	logs := &testworld.LogBuffer{}
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
	for _, f := range prepare {
		f(p)
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
