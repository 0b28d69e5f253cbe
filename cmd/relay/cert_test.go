package main

import (
	"net"
	"path/filepath"
	"slices"
	"testing"

	"github.com/edgerelay/relay/certs"
)

// TestCertHostList: -host as an admin types it ("10.0.0.1, venue.local,")
// gives exactly those names: spaces after commas and an empty entry do
// not become names of their own (" venue.local" matches no client's
// venue.local, and the handshake fails at the venue).
func TestCertHostList(t *testing.T) {
	dir := t.TempDir()
	relayCert(t, "ca", "-dir", dir)
	relayCert(t, "server", "-dir", dir, "-name", "venue", "-host", "10.0.0.1, venue.local,, signage.local ,")
	c, err := certs.ReadCert(filepath.Join(dir, "venue.crt"))
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(slices.Values(c.DNSNames))
	if want := []string{"signage.local", "venue", "venue.local"}; !slices.Equal(names, want) {
		t.Errorf("DNS names %q, want %q", names, want)
	}
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("IP addresses %v, want [10.0.0.1]", c.IPAddresses)
	}
	if err := c.VerifyHostname("venue.local"); err != nil {
		t.Errorf("the certificate does not verify for venue.local: %v", err)
	}
}
