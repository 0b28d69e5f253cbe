package daemon

import (
	"context"
	"fmt"
	"reflect"

	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/config"
)

// Reload loads the config again and applies it. Nothing changes when the new
// config or its ACL fails to load, or when a new socket cannot be bound.
// Listeners are matched by name: an unchanged one keeps its sockets and
// connections; a changed one gets its new sockets bound before the old ones
// close (SO_REUSEPORT lets both exist for the moment of the swap), and the old
// one drains under shutdown_grace; a removed one stops accepting and drains.
// Reloads run one at a time; once Shutdown or Close has begun, Reload changes
// nothing and returns ErrStopped.
func (d *Daemon) Reload() error {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	if d.notify != nil {
		_ = d.notify.Reloading()
		defer func() { _ = d.notify.Ready() }()
	}
	cfg, err := d.load()
	if err != nil {
		d.log.Error().Err(err).Msg("reload: config rejected, nothing changed")
		return fmt.Errorf("reload: %w", err)
	}
	list, err := LoadACL(cfg)
	if err != nil {
		d.log.Error().Err(err).Msg("reload: ACL rejected, nothing changed")
		return fmt.Errorf("reload: %w", err)
	}

	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return fmt.Errorf("reload: %w", ErrStopped)
	}
	var fresh []config.Listener
	keep := make(map[string]bool)
	for _, spec := range cfg.Listeners {
		if old, ok := d.running[spec.Name]; ok && reflect.DeepEqual(old.spec, spec) {
			keep[spec.Name] = true
			continue
		}
		fresh = append(fresh, spec)
	}
	opened, err := d.openAll(fresh)
	if err != nil {
		d.mu.Unlock()
		d.log.Error().Err(err).Msg("reload: cannot bind, nothing changed")
		return fmt.Errorf("reload: %w", err)
	}

	// From here on the reload cannot fail.
	d.storeACL(list)
	var retired []*instance
	for name, in := range d.running {
		if !keep[name] {
			retired = append(retired, in)
			delete(d.running, name)
			d.draining[in] = true
		}
	}
	for _, in := range retired {
		// Before the replacements serve: a connection that arrives once
		// Reload has returned must meet the new config, also on a socket
		// the replacement took over.
		if s, ok := in.srv.(interface{ StopAccepting() }); ok {
			s.StopAccepting()
		}
	}
	for _, in := range opened {
		d.running[in.spec.Name] = in
		d.serve(in)
	}
	d.cfg = cfg
	for name := range d.carried {
		if _, named := d.running[name]; !named {
			delete(d.carried, name) // removed: its series go with it
		}
	}
	replaced := make(map[string]bool, len(retired))
	for _, in := range retired {
		_, replaced[in.spec.Name] = d.running[in.spec.Name]
	}
	d.serving.Add(len(retired)) // under mu, so a Shutdown waits for the drains
	d.mu.Unlock()

	if d.levels != nil {
		d.levels.SetLevel(cfg.Log.Level)
	}
	for _, in := range retired {
		d.drain(in, cfg, replaced[in.spec.Name])
	}
	d.reloadAdmin(cfg.Admin.Listen)
	d.log.Info().Int("kept", len(keep)).Int("started", len(opened)).Int("retired", len(retired)).
		Msg("reload applied")
	return nil
}

// drain shuts a retired listener down in the background under the grace
// period of the config now in force; replaced says a listener of the same
// name took its place. The caller has added it to d.serving.
func (d *Daemon) drain(in *instance, cfg *config.Config, replaced bool) {
	go d.drainListener(in, cfg, replaced)
}

func (d *Daemon) drainListener(in *instance, cfg *config.Config, replaced bool) {
	defer d.serving.Done()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if replaced && in.spec.Mode == config.ModeUDP {
		// A draining UDP socket still bound beside its replacement would get
		// its share of SO_REUSEPORT's hash of new clients and drop them for
		// the whole grace period. Closing it at once loses nothing a client
		// sees: its next datagram opens a session on the new socket, on the
		// same port.
		_ = in.srv.Close()
	} else {
		_ = in.srv.Shutdown(ctx)
	}
	final := admin.Carry(in.snapshot()) // its connections are over: final counts
	d.mu.Lock()
	delete(d.draining, in)
	if _, named := d.running[in.spec.Name]; named {
		if prev, ok := d.carried[in.spec.Name]; ok {
			final = admin.Merge(prev, final)
		}
		d.carried[in.spec.Name] = final
	}
	d.mu.Unlock()
	d.log.Info().Str("listener", in.spec.Name).Msg("retired listener drained")
}

// reloadAdmin moves the admin endpoint when admin.listen changed. A failure
// to bind the new address is logged; the listeners' reload stands.
func (d *Daemon) reloadAdmin(listen string) {
	d.mu.Lock()
	same := (d.admin == nil && listen == "") || (d.admin != nil && d.adminAt == listen)
	d.mu.Unlock()
	if same {
		return
	}
	d.stopAdmin()
	if err := d.startAdmin(listen); err != nil {
		d.log.Error().Err(err).Msg("reload: admin endpoint not moved")
	}
}
