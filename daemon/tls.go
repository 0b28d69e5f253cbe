package daemon

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/upstream"
)

// tlsFiles is the TLS material of a config, read from its files: per
// listener name, what its tls and upstream_tls sections name.
type tlsFiles struct {
	servers map[string]*certs.ServerState
	clients map[string]*certs.ClientState
}

// LoadTLS reads the certificates, keys and CAs of every listener of cfg.
// Config has checked them once already; reading them again here is what
// makes a reload pick up renewed files, and catches a file that changed in
// between. Errors name the listener and the file.
func LoadTLS(cfg *config.Config) (tlsFiles, error) {
	f := tlsFiles{servers: map[string]*certs.ServerState{}, clients: map[string]*certs.ClientState{}}
	for i, l := range cfg.Listeners {
		if l.TLS != nil {
			st, err := certs.LoadServer(*l.TLS)
			if err != nil {
				return tlsFiles{}, fmt.Errorf("listeners[%d].tls (%s): %w", i, l.Name, err)
			}
			f.servers[l.Name] = st
		}
		if l.UpstreamTLS != nil {
			st, err := certs.LoadClient(*l.UpstreamTLS)
			if err != nil {
				return tlsFiles{}, fmt.Errorf("listeners[%d].upstream_tls (%s): %w", i, l.Name, err)
			}
			f.clients[l.Name] = st
		}
	}
	return f, nil
}

// tlsSet holds, per listener name, the certs.Server and certs.Client its
// forward.Listener keeps for life. They outlive the listener instances: a
// reload that rebuilds a listener hands the same holders to its
// replacement, so session tickets and the client session cache stay valid,
// and a reload that keeps a listener only swaps the material inside.
//
// A start or reload stages the material it read, opens listeners (which
// take holders, made from the staged material when new), and commits once
// it can no longer fail; reloads are serialised, so one staging is in
// flight at a time.
type tlsSet struct {
	mu      sync.Mutex // guards the following
	servers map[string]*certs.Server
	clients map[string]*certs.Client
	staged  tlsFiles
}

func (s *tlsSet) stage(f tlsFiles) {
	s.mu.Lock()
	s.staged = f
	s.mu.Unlock()
}

// wire gives a tcp or raw listener's forward.Config its TLS holders.
func (s *tlsSet) wire(spec config.Listener, cfg *forward.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec.TLS != nil {
		h := s.servers[spec.Name]
		if h == nil {
			st := s.staged.servers[spec.Name]
			if st == nil {
				return fmt.Errorf("tls: certificates of %s not loaded", spec.Name)
			}
			h = certs.NewServer(st)
			if s.servers == nil {
				s.servers = map[string]*certs.Server{}
			}
			s.servers[spec.Name] = h
		}
		cfg.TLS = h.Config()
	}
	if spec.UpstreamTLS != nil {
		h, err := s.clientLocked(spec.Name)
		if err != nil {
			return err
		}
		cfg.UpstreamTLS = h.Config
	}
	return nil
}

// probe gives the upstream Set of a listener with upstream_tls its TLS
// probe, over the holder its forward.Listener gets from wire: a probe
// handshakes with the material in force, as a client's dial does, a
// reload's too.
func (s *tlsSet) probe(spec config.Listener, cfg *upstream.Config) error {
	if spec.UpstreamTLS == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.clientLocked(spec.Name)
	if err != nil {
		return err
	}
	cfg.Handshake = forward.ProbeTLS(h.Config, spec.ProxyProtocol)
	return nil
}

// clientLocked returns the upstream_tls holder of listener name, made from
// the staged material on first use.
func (s *tlsSet) clientLocked(name string) (*certs.Client, error) {
	if h := s.clients[name]; h != nil {
		return h, nil
	}
	st := s.staged.clients[name]
	if st == nil {
		return nil, fmt.Errorf("upstream_tls: certificates of %s not loaded", name)
	}
	h := certs.NewClient(st)
	if s.clients == nil {
		s.clients = map[string]*certs.Client{}
	}
	s.clients[name] = h
	return h, nil
}

// clientsChanged names the listeners whose staged upstream_tls material
// differs from the material in force (certs.Client.Same): the files were
// read again and now hold another CA, client certificate or server name.
// A listener without a holder yet has nothing in force to differ from.
func (s *tlsSet) clientsChanged() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := make(map[string]bool)
	for name, st := range s.staged.clients {
		if h := s.clients[name]; h != nil && !h.Same(st) {
			changed[name] = true
		}
	}
	return changed
}

// commit puts the staged material in force, forgets holders whose listener
// no longer uses TLS, and returns the certificates now in force, served
// (tls) or presented to upstreams (upstream_tls), that are new or changed
// (every one when all is set).
func (s *tlsSet) commit(all bool) []leafInForce {
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []leafInForce
	for name, st := range s.staged.servers {
		h := s.servers[name]
		if h == nil { // no listener took it (none of that name was opened or kept)
			continue
		}
		if all || certs.Fingerprint(h.Leaf()) != certs.Fingerprint(st.Leaf()) {
			changed = append(changed, leafInForce{name, "client", st.Leaf()})
		}
		h.Store(st)
	}
	for name, st := range s.staged.clients {
		h := s.clients[name]
		if h == nil {
			continue
		}
		old := h.Leaf()
		h.Store(st)
		if leaf := h.Leaf(); leaf != nil && (all || old == nil || !bytes.Equal(old.Raw, leaf.Raw)) {
			changed = append(changed, leafInForce{name, "upstream", leaf})
		}
	}
	for name := range s.servers {
		if s.staged.servers[name] == nil {
			delete(s.servers, name)
		}
	}
	for name := range s.clients {
		if s.staged.clients[name] == nil {
			delete(s.clients, name)
		}
	}
	s.staged = tlsFiles{}
	return changed
}

// commitTLS commits the staged TLS material and logs each certificate in
// force that is new or changed, and warns of each in force that is
// not valid now (the files hold no better one: every client refuses it).
func (d *Daemon) commitTLS(all bool) {
	for _, c := range d.tls.commit(all) {
		d.log.Info().Str("listener", c.listener).Str("side", c.side).Str("subject", c.leaf.Subject.CommonName).
			Time("not_after", c.leaf.NotAfter).Str("sha256", certs.Fingerprint(c.leaf)).
			Msg("tls certificate in force")
	}
	now := time.Now()
	for _, c := range d.tls.leaves() {
		switch {
		case now.After(c.leaf.NotAfter):
			d.log.Warn().Str("listener", c.listener).Str("side", c.side).Time("not_after", c.leaf.NotAfter).
				Msg("tls certificate in force has expired: every peer refuses it; renew it and reload")
		case now.Before(c.leaf.NotBefore):
			d.log.Warn().Str("listener", c.listener).Str("side", c.side).Time("not_before", c.leaf.NotBefore).
				Msg("tls certificate in force is not valid yet: every peer refuses it until then")
		}
	}
}

// leafInForce is a certificate a listener presents: to its clients (side
// "client", tls) or to its upstreams (side "upstream", upstream_tls).
type leafInForce struct {
	listener, side string
	leaf           *x509.Certificate
}

// leaves returns the certificates in force.
func (s *tlsSet) leaves() []leafInForce {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []leafInForce
	for name, h := range s.servers {
		out = append(out, leafInForce{name, "client", h.Leaf()})
	}
	for name, h := range s.clients {
		if leaf := h.Leaf(); leaf != nil {
			out = append(out, leafInForce{name, "upstream", leaf})
		}
	}
	return out
}
