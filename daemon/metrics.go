package daemon

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
)

// Snapshots reads the counters of every listener, running or draining, for
// the admin endpoint, plus the final counters of instances a reload replaced.
// Snapshots sharing a name (a draining listener and its replacement, carried
// counts) are added up by admin, so a name's counters never go down.
func (d *Daemon) Snapshots() []admin.Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]admin.Snapshot, 0, len(d.running)+len(d.draining))
	for _, in := range d.running {
		out = append(out, in.snapshot())
	}
	for in := range d.draining {
		out = append(out, in.snapshot())
	}
	for name, s := range d.carried {
		if _, named := d.running[name]; named {
			out = append(out, s)
		}
	}
	return out
}

// snapshot maps a package's Stats onto admin's shape.
func (in *instance) snapshot() admin.Snapshot {
	s := admin.Snapshot{Listener: in.spec.Name, Mode: string(in.spec.Mode)}
	switch st := in.stats.(type) {
	case *forward.Stats:
		s.BytesToUpstream, s.BytesToClient = st.BytesIn.Load(), st.BytesOut.Load()
		s.Conns = conns(st, st.DialFailures.Load())
		s.TLS = tlsSnapshot(in.spec, st)
		if in.spec.Mode == config.ModeRaw && in.spec.Raw.Exclusive {
			s.Raw = &admin.Raw{
				QueueLength:   st.QueueLength.Load(),
				Waits:         st.QueuedTotal.Load(),
				WaitTime:      time.Duration(st.QueueWaitNanos.Load()),
				QueueTimeouts: st.QueueTimeouts.Load(),
			}
		}
	case *ftppassive.Stats:
		s.BytesToUpstream = st.ControlBytesToUpstream.Load() + st.DataBytesToUpstream.Load()
		s.BytesToClient = st.ControlBytesToClient.Load() + st.DataBytesToClient.Load()
		s.Conns = conns(st.Control, st.DialFailures.Load())
		s.FTP = &admin.FTP{
			DataOpened:        st.DataOpened.Load(),
			DataFailed:        st.DataFailed.Load(),
			DataPortsInUse:    st.DataPortsInUse.Load(),
			BouncesRefused:    st.BouncesRefused.Load(),
			DataTheftAttempts: st.DataTheftAttempts.Load(),
		}
	case *udpstream.Stats:
		s.BytesToUpstream, s.BytesToClient = st.BytesIn.Load(), st.BytesOut.Load()
		s.UDP = &admin.UDP{
			SessionsActive:      st.SessionsActive.Load(),
			SessionsCreated:     st.SessionsCreated.Load(),
			SessionsExpired:     st.SessionsExpired.Load(),
			DatagramsToUpstream: st.DatagramsIn.Load(),
			DatagramsToClient:   st.DatagramsOut.Load(),
			Failovers:           st.Failovers.Load(),
			Dropped:             st.Drops.DropReasons(),
		}
	}
	return s
}

// tlsSnapshot reads the handshake counters of the sides that use TLS.
func tlsSnapshot(spec config.Listener, st *forward.Stats) *admin.TLS {
	if spec.TLS == nil && spec.UpstreamTLS == nil {
		return nil
	}
	t := &admin.TLS{}
	if spec.TLS != nil {
		t.Client = handshakes(&st.Handshakes)
	}
	if spec.UpstreamTLS != nil {
		t.Upstream = handshakes(&st.UpstreamHandshakes)
	}
	return t
}

func handshakes(h *forward.Handshakes) *admin.Handshakes {
	return &admin.Handshakes{OK: h.OK.Load(), Resumed: h.Resumed.Load(), Failed: h.Failed()}
}

func conns(st *forward.Stats, dialFailures uint64) *admin.Conns {
	if st == nil {
		return nil
	}
	return &admin.Conns{
		Accepted:         st.Accepted.Load(),
		RejectedACL:      st.Rejected.Load(),
		RejectedMaxConns: st.Refused.Load(),
		Active:           st.Active.Load(),
		DialFailures:     dialFailures,
	}
}

// startAdmin binds the admin endpoint at listen ("" leaves it off). It must
// be called without d.mu: a scrape takes d.mu, and closing waits for scrapes.
func (d *Daemon) startAdmin(listen string) error {
	if listen == "" {
		return nil
	}
	srv, err := admin.New(admin.Config{
		Listen:     listen,
		Gather:     d.Snapshots,
		Ready:      d.Ready,
		Draining:   d.Draining,
		Collectors: []prometheus.Collector{newReloadCollector(d)},
		Log:        d.log,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("admin.listen %s: %w", listen, err)
	}
	d.mu.Lock()
	if d.stopped {
		// A reload raced Shutdown: an endpoint started now would have
		// nobody to close it.
		d.mu.Unlock()
		_ = srv.Close()
		return ErrStopped
	}
	d.admin, d.adminAt = srv, listen
	d.serving.Add(1)
	d.mu.Unlock()
	go d.serveAdmin(srv)
	return nil
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

// AdminAddr is the bound admin address, nil when the endpoint is off.
func (d *Daemon) AdminAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.admin == nil {
		return ""
	}
	return d.admin.Addr().String()
}
