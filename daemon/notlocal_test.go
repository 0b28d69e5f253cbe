package daemon

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/config"
)

// TestNotLocalAddressSaysFreebind: a listener on an address none of the
// box's interfaces has, without freebind (the BACKUP of an HA pair started
// with a config written for the MASTER), fails to start with an error that
// says so and names the fix, as relay check warns and README's "Two boxes,
// one address" says the start-up log does; it said only "bind: cannot
// assign requested address". The error is still EADDRNOTAVAIL, for tcp and
// udp listeners alike.
func TestNotLocalAddressSaysFreebind(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	absent := netip.MustParseAddr("192.0.2.10") // TEST-NET-1
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, perr := netip.ParsePrefix(a.String()); perr == nil && p.Addr() == absent {
				t.Skipf("this box has %s", absent)
			}
		}
	}
	for _, mode := range []string{"tcp", "udp"} {
		t.Run(mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "relay.yaml")
			yaml := "admin: {listen: \"\"}\nlisteners:\n  - {name: vip, mode: " + mode +
				", listen: \"192.0.2.10:17650\", upstream: \"127.0.0.1:9\"}\n"
			if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(config.LoadOptions{Path: path, Environ: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			d := New(cfg, Options{Load: func() (*config.Config, error) { return cfg, nil }})
			err = d.Start()
			if err == nil {
				_ = d.Close()
				t.Fatal("started on an address this box does not have")
			}
			for _, want := range []string{"listener vip: " + mode + " 192.0.2.10:17650 is not an address of this box", "freebind: true"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if !errors.Is(err, syscall.EADDRNOTAVAIL) {
				t.Errorf("error %q is not EADDRNOTAVAIL", err)
			}
		})
	}
}
