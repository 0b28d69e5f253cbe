package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/pion/transport/v3/test"
)

// startHAProxy runs haproxy in the foreground on cfg until the test ends,
// and waits until it accepts on every port of wait. It skips the test when
// haproxy is not installed (.ci/install-deps installs it).
func startHAProxy(t *testing.T, cfg string, wait ...int) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			t.Skip("haproxy is not installed (run .ci/install-deps)")
		}
		bin = "/usr/sbin/haproxy"
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", path)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	for _, port := range wait {
		world.Eventually(t, fmt.Sprintf("haproxy listening on %d", port), func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
}

// TestHAProxyBothWays puts the relay next to a real HAProxy both ways:
//   - client 127.0.0.2 -> relay (proxy_protocol: v2) -> HAProxy (bind
//     accept-proxy, option forwardfor) -> web backend, which must see
//     X-Forwarded-For: 127.0.0.2, the client HAProxy learnt from the relay;
//   - client 127.0.0.3 -> HAProxy (send-proxy-v2) -> relay (trusted front
//     127.0.0.1, proxy_protocol: v1) -> a backend that reads the relay's v1
//     header byte for byte: it must name 127.0.0.3 and its port.
func TestHAProxyBothWays(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s", r.Header.Get("X-Forwarded-For"))
	})}
	webLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go web.Serve(webLn)
	t.Cleanup(func() { web.Close() })

	headers := make(chan string, 16)
	lineBackend := world.NewBackend(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		headers <- line
		io.WriteString(c, "ok\n")
	})

	hpIn, hpOut, relayIn, relayFront := freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp")
	startHAProxy(t, fmt.Sprintf(`
defaults
  timeout connect 2s
  timeout client 5s
  timeout server 5s
frontend from_relay
  mode http
  bind 127.0.0.1:%d accept-proxy
  option forwardfor
  default_backend web
backend web
  mode http
  server s1 %s
listen to_relay
  mode tcp
  bind 127.0.0.1:%d
  server r1 127.0.0.1:%d send-proxy-v2
`, hpIn, webLn.Addr(), hpOut, relayFront), hpIn, hpOut)

	yaml := fmt.Sprintf(`
admin: {listen: ""}
listeners:
  - {name: to-haproxy, mode: tcp, listen: "127.0.0.1:%d", upstream: "127.0.0.1:%d", proxy_protocol: v2}
  - name: behind-haproxy
    mode: tcp
    listen: "127.0.0.1:%d"
    upstream: "%s"
    accept_proxy_protocol: [127.0.0.1]
    proxy_protocol: v1
`, relayIn, hpIn, relayFront, lineBackend.Addr())
	w := startWorld(t, yaml, nil)

	client := &http.Client{Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
	}, Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", relayIn))
	if err != nil {
		t.Fatalf("GET through relay and haproxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if string(body) != "xff=127.0.0.2" {
		t.Fatalf("web backend saw %q, want xff=127.0.0.2 (HAProxy read the relay's v2 header)", body)
	}

	c, err := dialLine(t, "127.0.0.3", fmt.Sprintf("127.0.0.1:%d", hpOut))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.roundTrip("hi"); err != nil || got != "ok" {
		t.Fatalf("through haproxy and the relay: %q %v", got, err)
	}
	cport := c.LocalAddr().(*net.TCPAddr).Port
	want := fmt.Sprintf("PROXY TCP4 127.0.0.3 127.0.0.1 %d %d\r\n", cport, hpOut)
	// The readiness probes of startHAProxy went through too, from
	// 127.0.0.1: the header of this client is the one from 127.0.0.3.
	var got []string
	for !slices.Contains(got, want) {
		select {
		case h := <-headers:
			got = append(got, h)
		case <-time.After(5 * time.Second):
			t.Fatalf("backend read headers %q, want one %q", got, want)
		}
	}
	c.Close()
	_ = w.d.Close()
}
