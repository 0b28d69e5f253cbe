package daemon

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/upstream"
)

// Reload loads the config again and applies it in three steps: plan binds
// what is new without the lock, commitLocked swaps the running set under
// it, and retire hands the sockets over and lets what was replaced drain.
// Nothing changes when the new config or its ACL fails to load, or when a
// socket cannot be bound.
//
// Listeners are matched by name: an unchanged one keeps its sockets and
// connections. A changed or new one takes over the listen sockets of a
// retired listener on the same address (TCP, FTP control and UDP alike), so
// the ports never close; the retired one stops reading them before its
// successor starts and then drains: its connections and UDP sessions run
// on until they end by themselves (or by reload.hard_stop_after), and
// count against the successor's max_conns and per_source meanwhile
// (replaced, forward.Config.Replaces). Reloads
// run one at a time; once Shutdown or Close has begun, Reload changes
// nothing and returns ErrStopped.
func (d *Daemon) Reload() error {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	if d.notify != nil {
		_ = d.notify.Reloading()
		defer func() { _ = d.notify.Ready() }()
	}
	err := d.reload()
	d.counts.reloaded(err)
	if !errors.Is(err, ErrStopped) {
		d.mu.Lock()
		d.noteReloadLocked(time.Now(), err)
		d.mu.Unlock()
	}
	return err
}

func (d *Daemon) reload() error {
	cfg, err := d.load()
	if err != nil {
		d.log.Error().Err(err).Msg("reload: config rejected, nothing changed")
		return fmt.Errorf("reload: %w", err)
	}
	// Its files too, before the ACL or a certificate can fail: one that
	// does not exist yet reloads once it is written.
	d.watch.follow(appendSet(d.watched(), watchedFiles(cfg)...), d.log)
	list, err := loadACL(cfg)
	if err != nil {
		d.log.Error().Err(err).Msg("reload: ACL rejected, nothing changed")
		return fmt.Errorf("reload: %w", err)
	}
	files, err := LoadTLS(cfg)
	if err != nil {
		// The certificates in force stay: a renewal that left a key and
		// its certificate out of step must not take a tunnel down.
		d.log.Error().Err(err).Msg("reload: TLS certificates rejected, nothing changed")
		return fmt.Errorf("reload: %w", err)
	}
	d.tls.stage(files)
	tlsChanged := d.tls.clientsChanged() // before commit puts them in force
	p, err := d.plan(cfg)
	if err != nil {
		d.tls.stage(tlsFiles{})
		d.log.Error().Err(err).Msg("reload: cannot bind, nothing changed")
		return fmt.Errorf("reload: %w", err)
	}
	d.mu.Lock()
	err = d.commitLocked(p, list)
	d.mu.Unlock()
	if err != nil {
		d.tls.stage(tlsFiles{})
		p.abandon()
		return fmt.Errorf("reload: %w", err)
	}
	d.commitTLS(false)
	d.resetUpstreams(p, tlsChanged)
	d.retire(p)
	if d.levels != nil {
		d.levels.SetLevel(cfg.Log.Level)
		d.levels.SetFormat(cfg.Log.Format)
	}
	d.reloadAdmin(cfg.Admin.Listen)
	d.watch.follow(d.watched(), d.log)
	d.warn(cfg, list)
	added, changed, removed := p.changes()
	d.log.Info().Strs("added", added).Strs("changed", changed).Strs("removed", removed).
		Int("kept", len(p.keep)).Msg("reload applied")
	return nil
}

// plan is a reload worked out and bound, not yet in force.
type plan struct {
	cfg     *config.Config
	keep    map[string]bool // names whose listener runs on untouched
	retired []*instance     // running now; replaced or removed by cfg
	opened  []*instance     // bound (or taken over) for cfg; not serving yet
}

// plan compares cfg with what runs and opens the listeners that are new or
// changed, taking over the listen sockets of the ones they retire. It binds
// without d.mu, so scrapes go on meanwhile; reloads are serialised, so the
// running set cannot change under it except by Shutdown, which commitLocked
// notices.
func (d *Daemon) plan(cfg *config.Config) (*plan, error) {
	p := &plan{cfg: cfg, keep: make(map[string]bool)}
	var fresh []config.Listener
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil, ErrStopped
	}
	for _, spec := range cfg.Listeners {
		if old, ok := d.running[spec.Name]; ok && reflect.DeepEqual(old.spec, spec) {
			p.keep[spec.Name] = true
			continue
		}
		fresh = append(fresh, spec)
	}
	for name, in := range d.running {
		if !p.keep[name] {
			p.retired = append(p.retired, in)
		}
	}
	d.mu.Unlock()

	socks := handedOver(p.retired, d.log)
	defer socks.close()
	opened, err := d.openAll(fresh, socks, p.retired)
	if err != nil {
		return nil, err
	}
	p.opened = opened
	return p, nil
}

// changes names the listeners p adds, changes (same name, new spec) and
// removes, each sorted, for the "reload applied" line.
func (p *plan) changes() (added, changed, removed []string) {
	retired := make(map[string]bool, len(p.retired))
	for _, in := range p.retired {
		retired[in.spec.Name] = true
	}
	added, changed, removed = []string{}, []string{}, []string{}
	for _, in := range p.opened {
		if retired[in.spec.Name] {
			changed = append(changed, in.spec.Name)
			delete(retired, in.spec.Name)
		} else {
			added = append(added, in.spec.Name)
		}
	}
	for name := range retired {
		removed = append(removed, name)
	}
	slices.Sort(added)
	slices.Sort(changed)
	slices.Sort(removed)
	return added, changed, removed
}

// abandon closes what a plan opened; the retired listeners never noticed.
func (p *plan) abandon() {
	for _, in := range p.opened {
		_ = in.srv.Close()
	}
}

// commitLocked puts p in force: the ACL, the running set, the config. It
// fails only when Shutdown or Close has begun. It counts the goroutines
// retire starts in d.serving, under d.mu, so a Shutdown waits for them.
func (d *Daemon) commitLocked(p *plan, list *acl.List) error {
	if d.stopped {
		return ErrStopped
	}
	d.storeACL(list)
	for _, in := range p.retired {
		delete(d.running, in.spec.Name)
		d.draining[in] = true
	}
	for _, in := range p.opened {
		d.running[in.spec.Name] = in
	}
	d.cfg = p.cfg
	for name := range d.carried {
		if _, named := d.running[name]; !named {
			delete(d.carried, name) // removed: its series go with it
		}
	}
	d.serving.Add(len(p.opened) + len(p.retired))
	return nil
}

// retire hands the sockets over without a moment in which nobody accepts:
// a new UDP relay first stops its predecessor reading (TakeOver waits for
// it; datagrams wait in the socket meanwhile, and none is read by a relay
// that would drop it as draining), then the successors serve, and only once
// each TCP successor accepts do the retired listeners stop. Until then both
// accept on the same socket, each connection by one of them; Reload returns
// after, so every connection accepted later meets the new config. Then the
// retired drain.
func (d *Daemon) retire(p *plan) {
	for _, in := range p.opened {
		if s, ok := in.srv.(interface{ TakeOver() }); ok {
			s.TakeOver()
		}
	}
	for _, in := range p.opened {
		go d.serveListener(in)
	}
	for _, in := range p.opened {
		if s, ok := in.srv.(interface{ Started() <-chan struct{} }); ok {
			<-s.Started()
		}
	}
	for _, in := range p.retired {
		if s, ok := in.srv.(interface{ StopAccepting() }); ok {
			s.StopAccepting()
		}
		// Its successor checks and reports the upstreams now; two Sets
		// would log each outage twice for as long as this one drains.
		in.ups.Retire()
	}
	for _, in := range p.retired {
		go d.drainListener(in, p.cfg.Reload.HardStopAfter)
	}
}

// drainListener lets a retired listener's connections and sessions finish,
// however long they take unless hardStop is set; then its final counts are
// carried over to the listener of the same name, if any. A Shutdown of the
// daemon ends the drain under its own grace period.
func (d *Daemon) drainListener(in *instance, hardStop time.Duration) {
	defer d.serving.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if hardStop > 0 {
		t := time.AfterFunc(hardStop, func() {
			if n := in.open(); n > 0 {
				d.log.Warn().Str("listener", in.spec.Name).Int64("cut", n).Dur("hard_stop_after_ms", hardStop).
					Msg("reload.hard_stop_after reached: cutting the retired listener's remaining connections")
			}
			cancel()
		})
		defer t.Stop()
	}
	_ = in.srv.Shutdown(ctx)
	final := admin.Carry(in.snapshot()) // its connections are over: final counts
	d.mu.Lock()
	delete(d.draining, in)
	if cur, named := d.running[in.spec.Name]; named {
		if prev, ok := d.carried[in.spec.Name]; ok {
			final = admin.Merge(prev, final)
		}
		final.Upstreams = stillListed(final.Upstreams, cur.ups)
		d.carried[in.spec.Name] = final
	}
	d.keepNamesLocked()
	d.keepGuardsLocked()
	d.keepDataTablesLocked()
	d.mu.Unlock()
	d.log.Info().Str("listener", in.spec.Name).Msg("retired listener drained")
}

// stillListed returns the carried counts of the upstreams ups lists, in a
// new slice (a scrape may still read the old one). An upstream a reload
// took out of a listener's list would otherwise keep its failover series,
// under the name that lives on, for good.
func stillListed(carried []admin.Upstream, ups *upstream.Set) []admin.Upstream {
	listed := ups.Snapshot()
	var out []admin.Upstream
	for _, u := range carried {
		if slices.ContainsFunc(listed, func(st upstream.Status) bool { return st.Upstream == u.Address }) {
			out = append(out, u)
		}
	}
	return out
}

// keepNamesLocked drops from the DNS cache the upstream names that no
// listener, running or draining, names any more: the last user of a name
// a reload removed has just drained. Called with d.mu held, so that a
// reload cannot add a name between the count and the drop (the resolver's
// lock is never held while taking d.mu).
func (d *Daemon) keepNamesLocked() {
	var names []string
	for _, in := range d.running {
		names = append(names, in.ups.Names()...)
	}
	for in := range d.draining {
		names = append(names, in.ups.Names()...)
	}
	d.dns.Keep(names)
}

// keepDataTablesLocked frees the FTP data-port tables of the ranges no
// ftp listener, running or draining, has any more. Called with d.mu held,
// so that a reload cannot open a listener on a table being freed.
func (d *Daemon) keepDataTablesLocked() {
	var ranges [][2]uint16
	for _, in := range d.running {
		ranges = append(ranges, dataRange(in.spec))
	}
	for in := range d.draining {
		ranges = append(ranges, dataRange(in.spec))
	}
	if err := d.dataPorts.keep(ranges); err != nil {
		d.log.Warn().Err(err).Msg("ftp data-port tables")
	}
}

// dataRange is an ftp listener's data_ports; zero for other modes.
func dataRange(spec config.Listener) [2]uint16 {
	if spec.Mode != config.ModeFTP {
		return [2]uint16{}
	}
	return spec.FTP.DataPorts
}

// keepGuardsLocked drops the ACL counters of the listeners (name and
// protocol) that no instance, running or draining, uses any more, so that
// their relay_acl_* series go as the listener's other series do (those
// come from the instances themselves, and carried keeps only the names in
// force). A listener replaced under its name keeps its guard: the
// successor asked for the same one. The admin endpoint's guard stays.
// Called with d.mu held, so that no reload opens a listener on a guard
// being dropped.
func (d *Daemon) keepGuardsLocked() {
	d.acls.Keep(func(name string, proto acl.Proto) bool {
		if name == config.AdminACLName {
			return true
		}
		if in, ok := d.running[name]; ok && in.spec.Mode.Proto() == proto.String() {
			return true
		}
		for in := range d.draining {
			if in.spec.Name == name && in.spec.Mode.Proto() == proto.String() {
				return true
			}
		}
		return false
	})
}
