package udpstream

import (
	"net"
	"testing"

	"github.com/rs/zerolog"

	testworld "github.com/edgerelay/relay/internal/world"
)

// A listener bound to every address (0.0.0.0, the documented RTB layout)
// must answer from the address the client sent to, not from whichever local
// address the route picks: a box with several addresses (a VRRP virtual IP,
// a second subnet) would otherwise reply from the wrong one, and a client
// with a connected socket, or a NAT on the way, would drop every reply. On
// loopback the route to 127.0.0.2 picks 127.0.0.1, so sending to 127.0.0.5
// shows it.
func TestWildcardListenerRepliesFromDestination(t *testing.T) {
	checkLeaks(t)
	b := startBackend(t, "b0")
	for _, listen := range []string{"0.0.0.0:0", "[::]:0"} {
		r, err := Listen(Config{
			Name: "any", Listen: []string{listen}, Upstreams: [][]string{{b.addr().String()}},
			Log: zerolog.New(&testworld.LogBuffer{}),
		})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- r.Serve() }()
		t.Cleanup(func() { _ = r.Close() }) // a failing run leaks nothing into the tests after it
		port := r.Addrs()[0].(*net.UDPAddr).Port
		c := newClient(t, "127.0.0.2")
		for _, dst := range []net.IP{net.IPv4(127, 0, 0, 5), net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 5)} {
			// exchange fails unless the reply comes from dst:port.
			c.exchange(&net.UDPAddr{IP: dst, Port: port}, []byte("hello "+listen))
		}
		_ = r.Close()
		<-served
	}
}
