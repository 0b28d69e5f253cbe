package certs

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
)

// TestKeyExchangeNegotiated: the group a handshake used, for each pair of
// settings: hybrid on both sides is X25519MLKEM768; x25519 on either side
// is X25519, so a box office and a venue set differently still connect.
func TestKeyExchangeNegotiated(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	sc, sk := issue(t, ca, dir, "venue", KindServer, "127.0.0.1")
	cc, ck := issue(t, ca, dir, "boxoffice", KindClient)
	caFile := filepath.Join(dir, "ca.crt")
	tests := []struct {
		server, client KeyExchange
		want           tls.CurveID
	}{
		{KeyExchangeHybrid, KeyExchangeHybrid, tls.X25519MLKEM768},
		{KeyExchangeX25519, KeyExchangeHybrid, tls.X25519},
		{KeyExchangeHybrid, KeyExchangeX25519, tls.X25519},
		{KeyExchangeX25519, KeyExchangeX25519, tls.X25519},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range tests {
		sst, err := LoadServer(ServerFiles{Cert: sc, Key: sk, ClientCA: caFile, KeyExchange: tc.server})
		if err != nil {
			t.Fatal(err)
		}
		cst, err := LoadClient(ClientFiles{CA: caFile, Cert: cc, Key: ck, KeyExchange: tc.client})
		if err != nil {
			t.Fatal(err)
		}
		got := tlsConn(t, ln, NewServer(sst).Config(), NewClient(cst).Config("127.0.0.1:10443")).CurveID
		if got != tc.want {
			t.Errorf("server %v, client %v: negotiated %v, want %v", tc.server, tc.client, got, tc.want)
		}
	}
}

func TestParseKeyExchange(t *testing.T) {
	for _, s := range []string{"", "hybrid", "x25519"} {
		k, err := ParseKeyExchange(s)
		if err != nil || (s != "" && k.String() != s) {
			t.Errorf("%q: %v, %v", s, k, err)
		}
	}
	if _, err := ParseKeyExchange("X25519"); err == nil {
		t.Error(`"X25519" accepted; the config spells it x25519`)
	}
}
