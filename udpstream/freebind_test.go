package udpstream

import (
	"strings"
	"testing"
)

// TestFreebind binds a UDP listener on an address no interface has
// (TEST-NET-1; nothing is sent): refused without freebind, bound with it.
func TestFreebind(t *testing.T) {
	cfg := Config{Name: "vip", Listen: []string{"192.0.2.1:0"}, Upstreams: [][]string{{"127.0.0.1:9"}}}
	if r, err := Listen(cfg); err == nil {
		r.Close()
		t.Skip("192.0.2.1 is bindable here without freebind (net.ipv4.ip_nonlocal_bind=1?)")
	} else if !strings.Contains(err.Error(), "cannot assign requested address") {
		t.Fatalf("without freebind: %v, want EADDRNOTAVAIL", err)
	}
	cfg.Freebind = true
	r, err := Listen(cfg)
	if err != nil {
		t.Fatalf("with freebind: %v", err)
	}
	defer r.Close()
	if got := r.Addrs()[0].String(); !strings.HasPrefix(got, "192.0.2.1:") {
		t.Fatalf("bound %s", got)
	}
}
