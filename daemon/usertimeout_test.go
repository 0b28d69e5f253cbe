package daemon

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/internal/world"
)

// TestRawUserTimeoutReachesSocket follows raw.user_timeout from the YAML
// through config and the mapping to the device socket forward dials, and
// reads TCP_USER_TIMEOUT back from it: 0 means the kernel's (0), as
// documented, not the built-in default.
func TestRawUserTimeoutReachesSocket(t *testing.T) {
	tests := []struct {
		name    string
		section string
		wantMS  int
	}{
		{"unset: default 10s", "", 10000},
		{"zero: the kernel's", "    raw: {user_timeout: 0}\n", 0},
		{"1500ms", "    raw: {user_timeout: 1500ms}\n", 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			printer := world.NewBackend(t, world.Echo)
			yaml := "listeners:\n  - name: printer\n    mode: raw\n    listen: 127.0.0.1:9100\n" +
				"    upstream: " + printer.Addr() + "\n" + tt.section
			cfg, err := config.Parse(strings.NewReader(yaml), "relay.yaml")
			if err != nil {
				t.Fatal(err)
			}
			spec := cfg.Listeners[0]
			spec.Listen = []string{"127.0.0.1:0"} // any free port; the file must name one
			fc := forwardConfig(spec)
			dialed := make(chan net.Conn, 1)
			fc.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err == nil {
					dialed <- c
				}
				return c, err
			}
			l, err := forward.Listen(fc)
			if err != nil {
				t.Fatal(err)
			}
			go l.Serve()
			defer l.Close()

			c, err := net.Dial("tcp", l.Addrs()[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// The echo coming back means the device socket is set up.
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			up := <-dialed
			rc, err := up.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var gerr error
			rc.Control(func(fd uintptr) {
				got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
			})
			if gerr != nil || got != tt.wantMS {
				t.Errorf("TCP_USER_TIMEOUT = %d ms, %v; want %d", got, gerr, tt.wantMS)
			}
		})
	}
}
