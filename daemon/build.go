package daemon

import (
	"errors"
	"fmt"
	"os"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
	"github.com/edgerelay/relay/upstream"
)

// open binds the listener spec describes, or takes over inherit's sockets
// (nil entries are bound); a UDP listener also serves the open sessions of
// the relays it replaces, an exclusive raw one shares their printer
// queues. The ACL guard it gets reads the shared set, so a reload that
// changes only the ACL reaches it too.
func (d *Daemon) open(spec config.Listener, inherit []*os.File, replaces replaced) (*instance, error) {
	ups, err := d.upstreams(spec, replaces.ups[spec.Name])
	if err != nil {
		return nil, err
	}
	in, err := d.openWith(spec, inherit, replaces, ups)
	if err != nil {
		ups.Close() // the listener may not have taken it over
		return nil, err
	}
	in.ups = ups
	counts := in.snap
	in.snap = func() admin.Snapshot {
		s := counts()
		upstreamCounts(&s, ups)
		return s
	}
	return in, nil
}

// upstreams builds the listener's upstream Set; the listener takes it over.
// It starts with the outages of prev, the Set of the listener of the same
// name a reload retires (nil: none).
func (d *Daemon) upstreams(spec config.Listener, prev *upstream.Set) (*upstream.Set, error) {
	cfg := upstreamConfig(spec)
	cfg.Resolver, cfg.Log, cfg.Replaces = d.dns, d.log, prev
	if err := d.tls.probe(spec, &cfg); err != nil {
		return nil, err
	}
	return upstream.New(cfg)
}

// openWith binds the listener with its upstream Set.
func (d *Daemon) openWith(spec config.Listener, inherit []*os.File, replaces replaced, ups *upstream.Set) (*instance, error) {
	log := d.log // each package adds the listener field itself
	switch spec.Mode {
	case config.ModeTCP, config.ModeRaw:
		cfg := forwardConfig(spec)
		cfg.Admit = d.acls.Guard(spec.Name, acl.ProtoTCP, log)
		cfg.Refused = d.acls.Refusals(spec.Name, acl.ProtoTCP, log)
		cfg.Pool, cfg.Inherit, cfg.Log = d.pipes, inherit, log
		cfg.Upstream, cfg.Replaces = ups, replaces.tcp
		if err := d.tls.wire(spec, &cfg); err != nil {
			return nil, err
		}
		if cfg.TLS != nil {
			// Decided within the handshake, with the certificate: hostssl lines.
			cfg.AdmitTLS = d.acls.GuardTLS(spec.Name, log)
		}
		l, err := forward.Listen(cfg)
		if err != nil {
			return nil, err
		}
		return &instance{spec: spec, srv: l, snap: func() admin.Snapshot {
			s := facts(spec)
			forwardCounts(&s, l.Stats(), spec)
			rawHolders(&s, l.Holders())
			return s
		}}, nil
	case config.ModeFTP:
		cfg := ftpConfig(spec)
		cfg.Admit = d.acls.Guard(spec.Name, acl.ProtoTCP, log)
		cfg.Refused = d.acls.Refusals(spec.Name, acl.ProtoTCP, log)
		cfg.Pool, cfg.Inherit, cfg.Log = d.pipes, inherit, log
		cfg.Upstream, cfg.Replaces = ups, replaces.tcp
		cfg.Ports = d.dataPorts.get(cfg.DataPorts, log)
		p, err := ftppassive.Listen(cfg)
		if err != nil {
			return nil, err
		}
		return &instance{spec: spec, srv: p, snap: func() admin.Snapshot {
			s := facts(spec)
			s.FTP = &admin.FTP{DataPorts: dataPorts(spec)}
			ftpCounts(&s, p.Stats())
			return s
		}}, nil
	case config.ModeUDP:
		cfg := udpConfig(spec)
		cfg.Admit = d.acls.Guard(spec.Name, acl.ProtoUDP, log)
		cfg.Inherit, cfg.Replaces, cfg.Log = inherit, replaces.udp, log
		cfg.Upstream, cfg.Buffers = ups, d.udpBufs
		r, err := udpstream.Listen(cfg)
		if err != nil {
			return nil, err
		}
		return &instance{spec: spec, srv: r, snap: func() admin.Snapshot {
			s := facts(spec)
			udpCounts(&s, r.Stats())
			return s
		}}, nil
	}
	return nil, fmt.Errorf("mode %q is not supported", spec.Mode)
}

// isClosed reports whether err is a package's "closed on purpose" sentinel.
func isClosed(err error) bool {
	return errors.Is(err, forward.ErrClosed) || errors.Is(err, ftppassive.ErrClosed) ||
		errors.Is(err, udpstream.ErrClosed)
}
