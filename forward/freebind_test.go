package forward

import (
	"errors"
	"syscall"
	"testing"
)

// TestFreebind binds an address no interface has (TEST-NET-1; nothing is
// sent): refused without freebind, as the backup box of an HA pair would
// be, and bound with it.
func TestFreebind(t *testing.T) {
	cfg := Config{Name: "vip", Listen: []string{"192.0.2.1:0"}, Upstreams: [][]string{{"127.0.0.1:9"}}}
	if l, err := Listen(cfg); err == nil {
		l.Close()
		t.Skip("192.0.2.1 is bindable here without freebind (net.ipv4.ip_nonlocal_bind=1?)")
	} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("without freebind: %v, want EADDRNOTAVAIL", err)
	}
	cfg.Freebind = true
	l, err := Listen(cfg)
	if err != nil {
		t.Fatalf("with freebind: %v", err)
	}
	defer l.Close()
	if got := l.Addrs()[0].String(); got[:10] != "192.0.2.1:" {
		t.Fatalf("bound %s", got)
	}
}
