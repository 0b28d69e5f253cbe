package daemon

import (
	"fmt"
	"testing"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/admin"
)

// TestStatusTLSFailing: a box office without a health section whose venue
// now shows a certificate from a CA it does not trust. The client's
// handshake fails, and /status.json puts the listener on the attention
// list with the reason and the venue (TLS FAILING on the page); once a
// reload brings the new CA and a job goes through, it is off it.
func TestStatusTLSFailing(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	w, at, venue, renewedCA := boxOfficeOfRenewedVenue(t, fmt.Sprintf(`"127.0.0.1:%d"`, freePort(t, "tcp")), "")
	base := "http://" + w.d.AdminAddr()
	attention := func() *admin.TLSAttention {
		t.Helper()
		code, st := readStatus(t, "127.0.0.1", base)
		if code != 200 || len(st.Listeners) != 1 || st.Listeners[0].TLS == nil {
			t.Fatalf("status.json: %d %+v", code, st.Listeners)
		}
		return st.Listeners[0].TLS.Attention
	}
	if a := attention(); a != nil {
		t.Fatalf("attention before any handshake: %+v", a)
	}

	c, err := dialLine(t, "", at)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.roundTrip("job 1"); err == nil {
		t.Fatalf("a client got %q through a venue with an untrusted certificate", got)
	}
	c.Close()
	a := attention()
	if a == nil || a.Side != admin.SideUpstream || a.Reason != "unknown_authority" || a.Peer != venue.Addr() {
		t.Fatalf("attention %+v, want upstream unknown_authority with %s", a, venue.Addr())
	}

	w.writeFile("ca.crt", renewedCA)
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	// The failed dial marked the venue down; the reload, whose new CA
	// changes its handshake, brings it back at once.
	w.logs.Wait(t, `"message":"upstream state reset"`)
	c, err = dialLine(t, "", at)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.roundTrip("job 2"); err != nil || got != "venue:job 2" {
		t.Fatalf("after the reload: %q, %v", got, err)
	}
	c.Close()
	if a := attention(); a != nil {
		t.Errorf("attention after a job went through: %+v", a)
	}
	_ = w.d.Close()
}
