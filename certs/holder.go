package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
)

// ServerFiles names the PEM files of a TLS listener.
type ServerFiles struct {
	Cert, Key string
	// ClientCA, when set, makes a client certificate signed by it required
	// and verified. Empty: server-only TLS.
	ClientCA string
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13. Zero: TLS 1.3.
	MinVersion uint16
	// KeyExchange is what the listener accepts. Zero: hybrid.
	KeyExchange KeyExchange
}

// ServerState is ServerFiles read into memory, ready for Server.Store.
type ServerState struct {
	cfg *tls.Config
}

// LoadServer reads the files of f. Errors name the file at fault.
func LoadServer(f ServerFiles) (*ServerState, error) {
	pair, err := LoadPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	if err := forUse(pair.Leaf, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, &FileError{"cert", f.Cert, err}
	}
	cfg := &tls.Config{
		Certificates:     []tls.Certificate{*pair},
		MinVersion:       f.MinVersion,
		CurvePreferences: f.KeyExchange.curves(),
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS13
	}
	if f.ClientCA != "" {
		pool, err := LoadPool(f.ClientCA)
		if err != nil {
			if fe, ok := err.(*FileError); ok {
				fe.Key = "client_ca"
			}
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return &ServerState{cfg: cfg}, nil
}

// Leaf is the certificate the state serves.
func (s *ServerState) Leaf() *x509.Certificate { return s.cfg.Certificates[0].Leaf }

// Server is the TLS side of one listener. Its Config never changes, so the
// listener keeps it for life; the certificate, key and client CA it hands to
// each handshake are the ones last stored. Session ticket keys belong to the
// outer Config (crypto/tls uses them when the per-client Config sets none),
// so tickets stay valid across Store.
type Server struct {
	outer *tls.Config
	cur   atomic.Pointer[tls.Config]
}

// ConnVerifier is a conn given to tls.Server that checks its own
// handshake: a Server hands the func it returns, unless nil, to that
// handshake as tls.Config.VerifyConnection. A listener's ACL so decides
// on the client's certificate inside the handshake, and a refusal is an
// alert (bad_certificate) sent before the handshake is done and before any
// session ticket, which the client can tell from an acceptance; after the
// handshake a TLS 1.3 server can only close, with the ticket already sent.
type ConnVerifier interface {
	TLSVerifier() func(tls.ConnectionState) error
}

// NewServer returns a Server handing out st.
func NewServer(st *ServerState) *Server {
	s := &Server{}
	s.cur.Store(st.cfg)
	s.outer = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := s.cur.Load()
			if hello == nil {
				return cfg, nil
			}
			if v, ok := hello.Conn.(ConnVerifier); ok {
				if verify := v.TLSVerifier(); verify != nil {
					// A copy per handshake: the ticket keys stay the
					// outer Config's, so resumption is unaffected.
					cfg = cfg.Clone()
					cfg.VerifyConnection = verify
				}
			}
			return cfg, nil
		},
	}
	return s
}

// Store makes st the material of every later handshake.
func (s *Server) Store(st *ServerState) { s.cur.Store(st.cfg) }

// Config is the *tls.Config to give tls.Server.
func (s *Server) Config() *tls.Config { return s.outer }

// Leaf is the certificate served now.
func (s *Server) Leaf() *x509.Certificate { return s.cur.Load().Certificates[0].Leaf }

// ClientFiles names the files and name used to reach a TLS upstream.
type ClientFiles struct {
	CA string // the upstream's certificate must chain to it; required
	// ServerName is verified against the upstream's certificate and sent
	// as SNI. Empty: the host of the upstream address being dialled.
	ServerName string
	Cert, Key  string // the client certificate to present; empty: none
	// KeyExchange is what the client offers. Zero: hybrid.
	KeyExchange KeyExchange
}

// ClientState is ClientFiles read into memory, ready for Client.Store.
type ClientState struct {
	cfg *tls.Config
}

// LoadClient reads the files of f. Errors name the file at fault.
func LoadClient(f ClientFiles) (*ClientState, error) {
	if f.CA == "" {
		return nil, &FileError{"ca", "", errors.New("missing: the upstream must be verified against a CA")}
	}
	pool, err := LoadPool(f.CA)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		RootCAs:          pool,
		ServerName:       f.ServerName,
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: f.KeyExchange.curves(),
	}
	if f.Cert != "" || f.Key != "" {
		pair, err := LoadPair(f.Cert, f.Key)
		if err != nil {
			return nil, err
		}
		if err := forUse(pair.Leaf, x509.ExtKeyUsageClientAuth); err != nil {
			return nil, &FileError{"cert", f.Cert, err}
		}
		cfg.Certificates = []tls.Certificate{*pair}
		// Presented whatever CAs the upstream names as acceptable:
		// crypto/tls would otherwise send none to an upstream that trusts
		// another CA, and both ends would log "certificate required"
		// where the truth is that the upstream does not trust ours
		// (unknown_authority, the reason each end then names).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair, nil }
	}
	return &ClientState{cfg: cfg}, nil
}

// clientSessions is how many upstream sessions a Client remembers for
// resumption: one per upstream host is what a listener needs.
const clientSessions = 64

// Client is the originating side of one listener: the CA, name and client
// certificate in force, and a session cache that outlives Store while the
// client certificate stays the same, so a reconnect after a reload still
// resumes.
type Client struct {
	cur atomic.Pointer[tls.Config]

	mu    sync.Mutex // guards the following
	cache tls.ClientSessionCache
}

// NewClient returns a Client using st.
func NewClient(st *ClientState) *Client {
	c := &Client{}
	c.Store(st)
	return c
}

// Store makes st the material of every later handshake. A new client
// certificate starts a new session cache: a session carries the
// certificate of its full handshake, and crypto/tls resumes it whatever
// certificate the Config holds now, so the upstream would go on seeing the
// old one (its name, which the venue's ACL matches, and its expiry) until
// the ticket ran out. A changed CA or server name needs no new cache:
// crypto/tls checks a session's chain and name against the Config on
// resumption.
func (c *Client) Store(st *ClientState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.cur.Load(); c.cache == nil || !sameLeaf(old.Certificates, st.cfg.Certificates) {
		c.cache = tls.NewLRUClientSessionCache(clientSessions)
	}
	cfg := st.cfg.Clone()
	cfg.ClientSessionCache = c.cache
	c.cur.Store(cfg)
}

// Same reports whether st would make the handshakes c makes now: the same
// CA certificates, server name, client certificate and key exchange. A
// reload decides by it whether files that were read again changed what an
// upstream's handshake depends on (their text, their dates may differ).
func (c *Client) Same(st *ClientState) bool {
	cur := c.cur.Load()
	return cur.RootCAs.Equal(st.cfg.RootCAs) && cur.ServerName == st.cfg.ServerName &&
		cur.MinVersion == st.cfg.MinVersion && slices.Equal(cur.CurvePreferences, st.cfg.CurvePreferences) &&
		sameLeaf(cur.Certificates, st.cfg.Certificates)
}

// sameLeaf reports whether a and b present the same certificate (or none).
func sameLeaf(a, b []tls.Certificate) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return bytes.Equal(a[0].Certificate[0], b[0].Certificate[0])
}

// Leaf returns the client certificate in force, nil when none is
// presented.
func (c *Client) Leaf() *x509.Certificate {
	if certs := c.cur.Load().Certificates; len(certs) > 0 {
		return certs[0].Leaf
	}
	return nil
}

// Config returns the *tls.Config for a connection to addr ("host:port"):
// the one in force, with ServerName set to addr's host when the files name
// none.
func (c *Client) Config(addr string) *tls.Config {
	cfg := c.cur.Load()
	if cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	cfg = cfg.Clone()
	cfg.ServerName = host
	return cfg
}

// forUse refuses a certificate whose extended key usage leaves out use
// (server or client authentication): every peer refuses it in the handshake
// ("incompatible key usage"), where the mistake is far from its file. A
// certificate that lists no usage may serve either.
func forUse(leaf *x509.Certificate, use x509.ExtKeyUsage) error {
	if len(leaf.ExtKeyUsage) == 0 || slices.Contains(leaf.ExtKeyUsage, use) ||
		slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil
	}
	if use == x509.ExtKeyUsageServerAuth {
		return fmt.Errorf("not a server certificate (use: %s): every client refuses it on a listener; issue one with relay cert server -name NAME", usage(leaf))
	}
	return fmt.Errorf("not a client certificate (use: %s): the upstream refuses it; issue one with relay cert client -name NAME", usage(leaf))
}
