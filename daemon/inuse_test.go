package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/config"
)

// TestSecondInstanceRefused: a second daemon on a config whose ports a
// running one holds fails to start, with an error that names the address
// and the holding process, for TCP and UDP; the first one is untouched.
func TestSecondInstanceRefused(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web, rtb := newTCPEcho(t, "web"), newUDPEcho(t, "rtb")
	for _, tc := range []struct{ name, proto, listener string }{
		{"web", "tcp", "  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"" + web.addr() + "\"}\n"},
		{"rtb", "udp", "  - {name: rtb, mode: udp, listen: \"127.0.0.1:%d\", upstream: \"" + rtb.addr() + "\"}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t, tc.proto)
			yaml := "admin: {listen: \"\"}\nlisteners:\n" + fmt.Sprintf(tc.listener, port)
			first := startWorld(t, yaml, nil)
			path := filepath.Join(first.dir, "relay.yaml")
			cfg, err := config.Load(config.LoadOptions{Path: path, Environ: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			second := New(cfg, Options{Load: func() (*config.Config, error) { return cfg, nil }})
			err = second.Start()
			if err == nil {
				_ = second.Close()
				t.Fatal("a second daemon started on held ports")
			}
			want := fmt.Sprintf("%s 127.0.0.1:%d is already in use by pid %d (", tc.proto, port, os.Getpid())
			if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q does not say %q on one line", err, want)
			}
			if first.d.Addrs(tc.name) == nil {
				t.Error("the first daemon lost its listener")
			}
		})
	}
}

func TestParseProcAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"00000000:0015", "0.0.0.0:21"},
		{"00000000000000000000000001000000:1F90", "[::1]:8080"},
		{"0000000000000000FFFF00000100007F:0050", "[::ffff:127.0.0.1]:80"},
	} {
		got, ok := parseProcAddr(tc.in)
		if !ok || got != netip.MustParseAddrPort(tc.want) {
			t.Errorf("parseProcAddr(%q) = %v %v, want %s", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:XYZ", "01007F:0050", "0100007G:0050"} {
		if got, ok := parseProcAddr(bad); ok {
			t.Errorf("parseProcAddr(%q) = %v, want failure", bad, got)
		}
	}
}

// TestRefusedStartLeavesNothing: a second daemon whose first listener
// binds and whose second finds its port held fails to start and leaves no
// goroutine and no descriptor behind: the first listener's Listen made
// the pool's front (an epoll loop) and its parker, which a failed Start
// must close as Close does.
func TestRefusedStartLeavesNothing(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web := newTCPEcho(t, "web")
	free, held := freePort(t, "tcp"), freePort(t, "tcp")
	listener := "  - {name: %s, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"" + web.addr() + "\"}\n"
	first := startWorld(t, "admin: {listen: \"\"}\nlisteners:\n"+fmt.Sprintf(listener, "b", held), nil)
	first.writeFile("second.yaml", "admin: {listen: \"\"}\nlisteners:\n"+
		fmt.Sprintf(listener, "a", free)+fmt.Sprintf(listener, "b", held))
	cfg, err := config.Load(config.LoadOptions{Path: filepath.Join(first.dir, "second.yaml"), Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)
	second := New(cfg, Options{Load: func() (*config.Config, error) { return cfg, nil }})
	if err := second.Start(); err == nil {
		_ = second.Close()
		t.Fatal("a second daemon started on a held port")
	}
	if n := openFDs(t); n != fds {
		t.Errorf("%d descriptors open after the failed start, %d before", n, fds)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
