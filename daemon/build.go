package daemon

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
)

// open binds the listener spec describes, or takes over inherit's sockets
// (nil entries are bound). The ACL guard it gets reads the shared set, so a
// reload that changes only the ACL reaches it too.
func (d *Daemon) open(spec config.Listener, inherit []*os.File) (*instance, error) {
	log := d.log // each package adds the listener field itself
	switch spec.Mode {
	case config.ModeTCP, config.ModeRaw:
		cfg := forwardConfig(spec)
		cfg.Admit = d.acls.Guard(spec.Name, acl.ProtoTCP, log)
		cfg.Pool, cfg.Inherit, cfg.Log = d.pipes, inherit, log
		l, err := forward.Listen(cfg)
		if err != nil {
			return nil, err
		}
		return &instance{spec: spec, srv: l, stats: l.Stats()}, nil
	case config.ModeFTP:
		cfg := ftpConfig(spec)
		cfg.Admit = d.acls.Guard(spec.Name, acl.ProtoTCP, log)
		cfg.Pool, cfg.Inherit, cfg.Log = d.pipes, inherit, log
		p, err := ftppassive.Listen(cfg)
		if err != nil {
			return nil, err
		}
		return &instance{spec: spec, srv: p, stats: p.Stats()}, nil
	case config.ModeUDP:
		cfg := udpConfig(spec)
		cfg.Admit = d.acls.Guard(spec.Name, acl.ProtoUDP, log)
		cfg.Log = log
		r, err := udpstream.Listen(cfg)
		if err != nil {
			return nil, err
		}
		return &instance{spec: spec, srv: r, stats: r.Stats()}, nil
	}
	return nil, fmt.Errorf("mode %q is not supported", spec.Mode)
}

// isClosed reports whether err is a package's "closed on purpose" sentinel.
func isClosed(err error) bool {
	return errors.Is(err, forward.ErrClosed) || errors.Is(err, ftppassive.ErrClosed) ||
		errors.Is(err, udpstream.ErrClosed)
}

// handover returns duplicates of old's listen sockets when spec listens on
// exactly the same TCP addresses, so the replacement takes them over: the
// ports never close and no connection waiting in the accept queue is reset,
// which rebinding beside the old socket (SO_REUSEPORT) cannot promise: the
// kernel resets what is queued on the socket that closes. UDP sockets are
// rebound; see drainListener.
func handover(old *instance, spec config.Listener) []*os.File {
	if old == nil || spec.Mode.Proto() != "tcp" || old.spec.Mode.Proto() != "tcp" ||
		!slices.Equal(old.spec.Listen, spec.Listen) {
		return nil
	}
	src, ok := old.srv.(interface{ Files() ([]*os.File, error) })
	if !ok {
		return nil
	}
	files, err := src.Files()
	if err != nil {
		return nil // bind anew beside the old socket instead
	}
	return files
}
