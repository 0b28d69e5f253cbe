package certs

import (
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkHandshake measures the CPU of one TLS 1.3 connection with client
// certificates, both ends in this process over loopback TCP: full or
// resumed from a ticket, with the hybrid key exchange (X25519MLKEM768, the
// default) or X25519 alone, and tcp-only, the same connection without TLS.
// The tls1.2 rows (X25519) are there for comparison only: a TLS 1.2 ticket
// resumes without a fresh key exchange, which is what "resumption is
// several times cheaper" figures usually measure; TLS 1.3 keeps forward
// secrecy on resumption and so pays the key exchange again.
// Run with -cpu 1, so that ns/op is the sum of both sides; cpu-ns/op is the
// process's CPU time, which a busy machine moves less. BENCHMARKS.md has
// the figures.
func BenchmarkHandshake(b *testing.B) {
	dir := b.TempDir()
	ca := newCA(b, dir)
	caFile := filepath.Join(dir, "ca.crt")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	sc, sk := issue(b, ca, dir, "venue", KindServer, "127.0.0.1")
	cc, ck := issue(b, ca, dir, "boxoffice", KindClient)
	b.Run("tcp-only", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		for range b.N {
			plainConn(b, ln)
		}
		b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	type variant struct {
		name  string
		kx    KeyExchange
		tls12 bool
	}
	for _, v := range []variant{{"", KeyExchangeHybrid, false}, {"", KeyExchangeX25519, false}, {"tls1.2", KeyExchangeX25519, true}} {
		kx := v.kx
		for _, resume := range []bool{false, true} {
			prefix := kx.String()
			if v.name != "" {
				prefix = v.name
			}
			name := prefix + "/full"
			if resume {
				name = prefix + "/resumed"
			}
			b.Run(name, func(b *testing.B) {
				var minVersion uint16
				if v.tls12 {
					minVersion = tls.VersionTLS12
				}
				sst, err := LoadServer(ServerFiles{Cert: sc, Key: sk, ClientCA: caFile, KeyExchange: kx, MinVersion: minVersion})
				if err != nil {
					b.Fatal(err)
				}
				cst, err := LoadClient(ClientFiles{CA: caFile, Cert: cc, Key: ck, KeyExchange: kx})
				if err != nil {
					b.Fatal(err)
				}
				srv, cli := NewServer(sst), NewClient(cst)
				ccfg := cli.Config("127.0.0.1:1")
				if !resume || v.tls12 {
					ccfg = ccfg.Clone()
				}
				if !resume {
					ccfg.ClientSessionCache = nil
				}
				if v.tls12 {
					ccfg.MaxVersion = tls.VersionTLS12
				}
				tlsConn(b, ln, srv.Config(), ccfg) // the first one fills the cache
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime(b)
				for range b.N {
					if got := tlsConn(b, ln, srv.Config(), ccfg).DidResume; got != resume {
						b.Fatalf("resumed %v, want %v", got, resume)
					}
				}
				b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the user and system CPU this process has used: on a shared
// machine it moves less than ns/op, which counts waiting for a core.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopbackPair returns the two ends of a loopback TCP connection. net.Pipe
// does not do: it has no buffer, and a resuming server sends its ticket
// while the client is still writing its Finished.
func loopbackPair(b testing.TB, ln net.Listener) (net.Conn, net.Conn) {
	z, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	return a, z
}

// plainConn is tlsConn without TLS: the fixed cost of a connection.
func plainConn(b *testing.B, ln net.Listener) {
	a, z := loopbackPair(b, ln)
	srvErr := make(chan error, 1)
	go func() {
		_, err := a.Write([]byte{1})
		a.Close()
		srvErr <- err
	}()
	var one [1]byte
	_, err := z.Read(one[:])
	z.Close()
	if serr := <-srvErr; serr != nil || err != nil {
		b.Fatalf("server %v, client %v", serr, err)
	}
}

// tlsConn runs one connection: handshake, one byte from the server (so the
// client reads the session ticket sent after the handshake), close. It
// returns the client's view of the connection.
func tlsConn(b testing.TB, ln net.Listener, scfg, ccfg *tls.Config) tls.ConnectionState {
	a, z := loopbackPair(b, ln)
	srvErr := make(chan error, 1)
	go func() {
		s := tls.Server(a, scfg)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		s.Close()
		srvErr <- err
	}()
	c := tls.Client(z, ccfg)
	var one [1]byte
	n, err := c.Read(one[:])
	if n == 1 && err == io.EOF {
		err = nil // TLS 1.2: the byte and the server's close_notify came together
	}
	st := c.ConnectionState()
	c.Close()
	if serr := <-srvErr; serr != nil || err != nil {
		b.Fatalf("server %v, client %v", serr, err)
	}
	return st
}
