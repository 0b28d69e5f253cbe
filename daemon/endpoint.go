package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgerelay/relay/admin"
)

// startAdmin binds the admin endpoint at listen, or takes over inherit
// (nil: bind), and serves it ("" leaves it off). It must be called without
// d.mu: a scrape takes d.mu, and closing waits for scrapes.
func (d *Daemon) startAdmin(listen string, inherit *os.File) error {
	if listen == "" {
		return nil
	}
	srv, err := d.bindAdmin(listen, inherit)
	if err != nil {
		return err
	}
	old, err := d.installAdmin(srv, listen)
	if old != nil {
		_ = old.Close()
	}
	return err
}

// bindAdmin builds an endpoint for listen and binds it.
func (d *Daemon) bindAdmin(listen string, inherit *os.File) (*admin.Server, error) {
	srv, err := admin.New(admin.Config{
		Listen:     listen,
		Inherit:    inherit,
		Gather:     d.Snapshots,
		Relay:      d.Facts,
		Ready:      d.Ready,
		Draining:   d.Draining,
		Allow:      d.adminAllow(listen),
		Hosts:      d.adminHosts,
		Collectors: []prometheus.Collector{newReloadCollector(d), newBufferCollector(d.udpBufs)},
		Log:        d.log,
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, fmt.Errorf("admin.listen: %w", inUse("tcp", err))
	}
	return srv, nil
}

// installAdmin makes the bound srv the endpoint and serves it; it returns
// the endpoint it replaced, for the caller to close without d.mu.
func (d *Daemon) installAdmin(srv *admin.Server, listen string) (*admin.Server, error) {
	d.mu.Lock()
	if d.stopped {
		// A reload raced Shutdown: an endpoint started now would have
		// nobody to close it.
		d.mu.Unlock()
		_ = srv.Close()
		return nil, ErrStopped
	}
	old := d.admin
	d.admin, d.adminAt, d.adminErr = srv, listen, ""
	d.serving.Add(1)
	d.mu.Unlock()
	go d.serveAdmin(srv)
	return old, nil
}

// stopAdmin closes the admin endpoint, if any. Called without d.mu.
func (d *Daemon) stopAdmin() {
	d.mu.Lock()
	srv := d.admin
	d.admin, d.adminAt = nil, ""
	d.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (d *Daemon) serveAdmin(srv *admin.Server) {
	defer d.serving.Done()
	if err := srv.Serve(); err != nil && !errors.Is(err, admin.ErrClosed) {
		d.log.Error().Err(err).Msg("admin endpoint stopped")
	}
}

// adminHosts returns the admin.hosts in force, for the endpoint's Host
// check; a reload changes them without rebinding the endpoint.
func (d *Daemon) adminHosts() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Admin.Hosts
}

// AdminAddr is the bound admin address, "" when the endpoint is off.
func (d *Daemon) AdminAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.admin == nil {
		return ""
	}
	return d.admin.Addr().String()
}

// reloadAdmin moves the admin endpoint when admin.listen changed. The new
// address is bound before the old one closes, so when it cannot be bound
// (the port is taken) the old endpoint keeps serving; the log and the
// status page say so. The listeners' reload stands either way.
func (d *Daemon) reloadAdmin(listen string) {
	d.mu.Lock()
	cur, at := d.admin, d.adminAt
	if cur != nil && at == listen || cur == nil && listen == "" {
		d.adminErr = ""
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	if listen == "" {
		d.stopAdmin()
		return
	}
	var srv *admin.Server
	var err error
	bound := ""
	if cur != nil {
		bound = cur.Addr().String()
	}
	if cur != nil && samePort(bound, listen) {
		// 0.0.0.0:9090 after 127.0.0.1:9090 cannot bind beside it: let the
		// old one go first, and take its address back if the new one fails.
		d.stopAdmin()
		if srv, err = d.bindAdmin(listen, nil); err != nil {
			if back, berr := d.bindAdmin(bound, nil); berr == nil {
				_, _ = d.installAdmin(back, at)
			} else {
				bound = "" // lost: say so below
				err = errors.Join(err, berr)
			}
		}
	} else {
		srv, err = d.bindAdmin(listen, nil)
	}
	if err != nil {
		d.adminNotMoved(bound, err)
		return
	}
	if old, _ := d.installAdmin(srv, listen); old != nil {
		_ = old.Close()
	}
}

// adminNotMoved records and logs that the endpoint could not move; bound
// is where it still serves, "" if nowhere.
func (d *Daemon) adminNotMoved(bound string, err error) {
	where := "it keeps serving on " + bound
	if bound == "" {
		where = "it is off until a reload can bind it"
	}
	d.mu.Lock()
	d.adminErr = fmt.Sprintf("not moved: %v; %s", err, where)
	d.mu.Unlock()
	d.log.Error().Err(err).Str("serving", bound).Msg("reload: admin endpoint not moved; " + where)
}

// samePort reports whether two host:port addresses name the same port.
func samePort(a, b string) bool {
	_, pa, errA := net.SplitHostPort(a)
	_, pb, errB := net.SplitHostPort(b)
	return errA == nil && errB == nil && pa == pb
}
