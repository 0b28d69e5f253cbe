package certs

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
)

// TestClientStoreNewCertificateIsPresented: after Store with another client
// certificate (a box office's renewed or replaced one, put in force by a
// reload), the next connection presents it. The session cache outlived
// Store, and crypto/tls resumes a cached session whatever certificate the
// Config now holds, so the upstream went on seeing the old certificate
// (its name for the ACL's cn=, its expiry) for the ticket's lifetime. A
// Store with the same certificate keeps the cache: a reload still resumes.
func TestClientStoreNewCertificateIsPresented(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	caFile := filepath.Join(dir, "ca.crt")
	sc, sk := issue(t, ca, dir, "venue", KindServer, "127.0.0.1")
	srv, err := LoadServer(ServerFiles{Cert: sc, Key: sk, ClientCA: caFile})
	if err != nil {
		t.Fatal(err)
	}
	scfg := NewServer(srv).Config()
	load := func(name string) *ClientState {
		crt, key := issue(t, ca, dir, name, KindClient)
		st, err := LoadClient(ClientFiles{CA: caFile, Cert: crt, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	one, two := load("boxoffice-1"), load("boxoffice-2")
	twoAgain, err := LoadClient(ClientFiles{CA: caFile, Cert: filepath.Join(dir, "boxoffice-2.crt"), Key: filepath.Join(dir, "boxoffice-2.key")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := NewClient(one)
	for i, step := range []struct {
		store   *ClientState // stored before the connection, unless nil
		cn      string       // the certificate the upstream sees
		resumed bool
	}{
		{nil, "boxoffice-1", false},
		{nil, "boxoffice-1", true},
		{two, "boxoffice-2", false},
		{nil, "boxoffice-2", true},
		{twoAgain, "boxoffice-2", true}, // the same certificate read again
	} {
		if step.store != nil {
			c.Store(step.store)
		}
		got := upstreamView(t, ln, scfg, c.Config(ln.Addr().String()))
		if len(got.PeerCertificates) == 0 {
			t.Fatalf("connection %d: the upstream saw no client certificate", i)
		}
		if cn := got.PeerCertificates[0].Subject.CommonName; cn != step.cn || got.DidResume != step.resumed {
			t.Errorf("connection %d: the upstream saw %s (resumed %v), want %s (resumed %v)",
				i, cn, got.DidResume, step.cn, step.resumed)
		}
	}
}

// upstreamView runs one TLS connection over ln and returns the upstream's
// view of it. The upstream writes a byte after its handshake, so the
// client has read the session ticket sent with it when the byte arrives.
func upstreamView(t *testing.T, ln net.Listener, scfg, ccfg *tls.Config) tls.ConnectionState {
	t.Helper()
	a, z := loopbackPair(t, ln)
	type result struct {
		st  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		s := tls.Server(a, scfg)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		st := s.ConnectionState()
		s.Close()
		done <- result{st, err}
	}()
	cl := tls.Client(z, ccfg)
	var one [1]byte
	_, err := cl.Read(one[:])
	cl.Close()
	r := <-done
	if r.err != nil || err != nil {
		t.Fatalf("upstream %v, client %v", r.err, err)
	}
	return r.st
}

// TestClientSame: the material in force read again is the same; another
// client certificate, another CA file or another server name is not.
func TestClientSame(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	ca := newCA(t, dir)
	newCA(t, other)
	caFile := filepath.Join(dir, "ca.crt")
	one, oneKey := issue(t, ca, dir, "boxoffice-1", KindClient)
	two, twoKey := issue(t, ca, dir, "boxoffice-2", KindClient)
	load := func(f ClientFiles) *ClientState {
		t.Helper()
		st, err := LoadClient(f)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	inForce := ClientFiles{CA: caFile, Cert: one, Key: oneKey}
	c := NewClient(load(inForce))
	for _, tc := range []struct {
		name  string
		files ClientFiles
		same  bool
	}{
		{"read again", inForce, true},
		{"another client certificate", ClientFiles{CA: caFile, Cert: two, Key: twoKey}, false},
		{"no client certificate", ClientFiles{CA: caFile}, false},
		{"another CA", ClientFiles{CA: filepath.Join(other, "ca.crt"), Cert: one, Key: oneKey}, false},
		{"a server name", ClientFiles{CA: caFile, Cert: one, Key: oneKey, ServerName: "venue"}, false},
	} {
		if got := c.Same(load(tc.files)); got != tc.same {
			t.Errorf("%s: Same %v, want %v", tc.name, got, tc.same)
		}
	}
}
