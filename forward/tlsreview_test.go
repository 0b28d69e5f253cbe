package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestTLSTunnelBothWaysHalfClose: through a box office (originating TLS)
// and a venue (terminating it), the client and the upstream send at the
// same time, each half-closes when done and reads the other's bytes to
// EOF. Both streams arrive whole (SHA-256), and each relay writes one
// access line with the exact counts and end eof.
func TestTLSTunnelBothWaysHalfClose(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	const up, down = 3<<20 + 17, 5<<20 + 3
	fromClient := make(chan world.Sum, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(world.WaitLimit))
		sent := make(chan error, 1)
		go func() {
			_, err := io.Copy(c, world.Stream(2, down))
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			sent <- err
		}()
		s, _ := world.Hash(c)
		<-sent
		fromClient <- s
	})
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       p.serverTLS(t, p.path("ca.crt")).Config(),
	})
	box := startRelay(t, Config{
		Upstreams:   [][]string{{venue.addr(0)}},
		UpstreamTLS: p.clientTLS(t, p, "boxoffice-1").Config,
	})
	c := box.dial(t, 0)
	c.SetDeadline(time.Now().Add(world.WaitLimit))
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, world.Stream(1, up))
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- err
	}()
	got, err := world.Hash(c)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("client send: %v", err)
	}
	if got != world.StreamSum(2, down) {
		t.Fatalf("client got %d bytes (or another hash), want %d", got.N, down)
	}
	if s := <-fromClient; s != world.StreamSum(1, up) {
		t.Fatalf("upstream got %d bytes (or another hash), want %d", s.N, up)
	}
	c.Close()
	counts := fmt.Sprintf(`"bytes_in":%d,"bytes_out":%d`, up, down)
	for name, r := range map[string]*relay{"box office": box, "venue": venue} {
		r.logs.Wait(t, "connection closed", counts, `"end":"eof"`)
		if n := r.logs.Count("connection closed"); n != 1 {
			t.Errorf("%s: %d access lines, want 1:\n%s", name, n, r.logs)
		}
	}
}

// TestTLSKeyUpdateAfterQuietWrites: a TLS 1.3 client (openssl s_client,
// its K command) asks for a KeyUpdate on a connection whose relay-to-
// client side last wrote longer than the idle timeout ago, while the
// client kept sending. crypto/tls answers the KeyUpdate from the reading
// goroutine, through the socket's write deadline: a deadline left over
// from the last write into TLS made that answer fail, crypto/tls then
// skipped rotating its read key, and the client's next record ended the
// connection with "bad record MAC" (end=error) instead of reaching the
// upstream.
func TestTLSKeyUpdateAfterQuietWrites(t *testing.T) {
	checkLeaks(t)
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl missing (.ci/install-deps installs it)")
	}
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(world.WaitLimit))
		io.WriteString(c, "hello\n") // the relay's last write into TLS for a while
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.TrimSpace(line) == "END" {
				io.WriteString(c, "bye\n")
			}
		}
	})
	const idle = time.Second
	venue := startRelay(t, Config{
		Upstreams:   [][]string{{backend.Addr()}},
		TLS:         p.serverTLS(t, "").Config(),
		IdleTimeout: idle,
	})
	ctx, cancel := context.WithTimeout(context.Background(), world.WaitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", venue.addr(0), "-tls1_3")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout // where it says KEYUPDATE
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	await := func(want string) {
		t.Helper()
		for line := range lines {
			if line == want {
				return
			}
		}
		t.Fatalf("openssl s_client ended before it printed %q:\n%s", want, venue.logs)
	}
	await("hello")
	// The client keeps the pair busy for 1.6 idle timeouts, a line every
	// fifth of one (the pacing is the scenario, not a synchronisation;
	// the margin keeps a busy machine from making the pair idle), then
	// asks for a KeyUpdate and sends on.
	for range 8 {
		io.WriteString(in, "data\n")
		time.Sleep(idle / 5)
	}
	// s_client takes a line starting with K as its command and drops
	// the rest of what it read with it: send on once it did the update.
	io.WriteString(in, "K\n")
	await("KEYUPDATE")
	io.WriteString(in, "data\n")
	io.WriteString(in, "END\n")
	await("bye")
	in.Close()
	line := venue.logs.Wait(t, "connection closed")
	if strings.Contains(line, "bad record MAC") || strings.Contains(line, `"end":"idle"`) {
		t.Fatalf("access line after a KeyUpdate: %s", line)
	}
}

// TestTLSClientResetMidStream: a TLS client that resets while the relay
// writes a long stream into TLS ends the pair as reset, with one access
// line, and the batch that failed mid-record is the last thing written.
func TestTLSClientResetMidStream(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, func(c net.Conn) {
		io.Copy(c, world.Stream(4, 64<<20)) // ends when the relay closes
	})
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       p.serverTLS(t, "").Config(),
	})
	raw := venue.dial(t, 0)
	c := tls.Client(raw, &tls.Config{RootCAs: p.clientPool(t), ServerName: "127.0.0.1"})
	c.SetDeadline(time.Now().Add(world.WaitLimit))
	if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read the stream: %v", err)
	}
	raw.SetLinger(0)
	raw.Close() // RST, with the relay's records still in flight
	line := venue.logs.Wait(t, "connection closed")
	if !strings.Contains(line, `"end":"reset"`) {
		t.Fatalf("access line after the client's reset: %s", line)
	}
	if n := venue.logs.Count("connection closed"); n != 1 {
		t.Fatalf("%d access lines, want 1:\n%s", n, venue.logs)
	}
}
