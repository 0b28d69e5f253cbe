// Package daemon runs the listeners a resolved config describes and keeps
// them running across reloads: it builds a forward, ftppassive or udpstream
// listener for each entry, wires the shared ACL set and the logger into them,
// swaps them by name on SIGHUP (the successor takes the listen sockets
// over), hands every listen socket to a new process on a binary upgrade
// (Upgrade, Takeover; the wire is package handoff), and drains them on
// shutdown. Its main type is Daemon. It moves no bytes itself and parses no
// files: config and acl do.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/udpstream"
	"github.com/edgerelay/relay/upstream"
)

// ErrStopped is returned by Reload once Shutdown or Close has begun.
var ErrStopped = errors.New("daemon: stopped")

// server is what every listener package provides.
type server interface {
	Serve() error
	Shutdown(ctx context.Context) error
	Close() error
	Addrs() []net.Addr
}

// Options configures a Daemon. Load is required; the rest may be zero.
type Options struct {
	// Load reads and validates the config; it is called again on reload.
	Load func() (*config.Config, error)
	// Log is the process logger; Levels, when set, lets a reload change the
	// level and the format at once.
	Log    zerolog.Logger
	Levels *LevelFilter
	// Notify receives systemd state changes; nil sends nothing.
	Notify Notifier
	// Version is shown on the status page; empty: unknown.
	Version string
	// Takeover holds the listen sockets the process this one replaces
	// handed over (a binary upgrade, see Upgrade); Start takes over those
	// on its addresses instead of binding, and leaves telling systemd that
	// it is ready to the old process. nil: bind everything.
	Takeover *Takeover
	// Resolver resolves upstream host names for every listener (one DNS
	// cache). nil: one over /etc/resolv.conf, closed with the daemon.
	Resolver *upstream.Resolver
}

// Notifier is the systemd notify protocol as the daemon uses it.
type Notifier interface {
	Ready() error
	Reloading() error
	Stopping() error
}

// Daemon owns the running listeners.
type Daemon struct {
	load    func() (*config.Config, error)
	log     zerolog.Logger
	levels  *LevelFilter
	notify  Notifier
	version string // for the status page
	acls    *acl.Set
	pipes   *forward.Pool // splice pipes shared by every TCP, raw and FTP listener
	dns     *upstream.Resolver
	ownDNS  bool        // dns was made here and is closed with the daemon
	ready   atomic.Bool // every configured listener is bound
	// drainingAll: Shutdown began; open connections are finishing.
	drainingAll atomic.Bool
	counts      reloadCounts
	takeover    *Takeover     // the sockets handed over on an upgrade; used by Start
	adminFile   *os.File      // the admin socket to take over; set only during Start
	done        chan struct{} // closed by Shutdown/Close: background loops end
	stop        sync.Once
	// handedOver: an upgrade named another process systemd's main one, so
	// this one tells systemd nothing more (a STOPPING=1 from it would stop
	// the service where NotifyAccess lets it through).
	handedOver atomic.Bool
	// watch is Watch's watcher, for a reload to add the folders of the
	// config it puts in force; it has its own lock.
	watch configWatch

	// udpBufs: the receive buffers of every UDP listener, old and new
	// across reloads, under one ceiling (16 MiB, see udpstream.Buffers).
	udpBufs *udpstream.Buffers

	serving sync.WaitGroup // Serve goroutines and background drains; Add only under mu while !stopped

	// reloading serialises Reload calls: two at once would each rebind the
	// admin endpoint and retire each other's listeners.
	reloading sync.Mutex

	mu       sync.Mutex // guards the following
	stopped  bool       // Shutdown or Close began: nothing may be started again
	cfg      *config.Config
	running  map[string]*instance
	draining map[*instance]bool // retired by a reload, still finishing
	// carried holds, per listener name, the final counters of instances a
	// reload replaced, so that the name's counters never go down.
	carried map[string]admin.Snapshot
	admin   *admin.Server // nil when admin.listen is empty
	adminAt string        // the admin.listen admin was bound for
	// adminErr says why the endpoint is not at the config's admin.listen.
	adminErr string

	started    time.Time     // Start
	lastReload *admin.Reload // nil: no reload yet

	tls tlsSet // per listener: the TLS holders its listener keeps; has its own lock
	// dataPorts are the ftp listeners' data-port tables; own lock.
	dataPorts dataTables
}

// instance is one running listener and the config it was built from.
type instance struct {
	spec config.Listener
	srv  server
	ups  *upstream.Set         // its upstreams and their health: a successor starts with its outages
	snap func() admin.Snapshot // its counters and facts, for the admin endpoint (snapshot.go)
	down atomic.Bool           // Serve failed: it accepts nothing any more
}

// New returns a Daemon for cfg, which the caller has loaded with opts.Load.
// It binds nothing until Start.
func New(cfg *config.Config, opts Options) *Daemon {
	dns, ownDNS := opts.Resolver, false
	if dns == nil {
		dns, ownDNS = upstream.NewResolver(upstream.ResolverConfig{Log: opts.Log}), true
	}
	return &Daemon{
		dns:      dns,
		ownDNS:   ownDNS,
		load:     opts.Load,
		log:      opts.Log,
		levels:   opts.Levels,
		notify:   opts.Notify,
		version:  opts.Version,
		takeover: opts.Takeover,
		acls:     new(acl.Set),
		pipes:    forward.NewPool(0),
		udpBufs:  udpstream.NewBuffers(),
		done:     make(chan struct{}),
		cfg:      cfg,
		running:  make(map[string]*instance),
		draining: make(map[*instance]bool),
		carried:  make(map[string]admin.Snapshot),
	}
}

// Start loads the ACL, binds every listener and the admin endpoint; on any
// error nothing stays bound. It then serves them in the background.
func (d *Daemon) Start() error {
	cfg := d.Config()
	list, err := loadACL(cfg)
	if err != nil {
		return err
	}
	files, err := LoadTLS(cfg)
	if err != nil {
		return err
	}
	socks := make(sockets)
	if d.takeover != nil {
		socks, d.takeover.socks = d.takeover.socks, nil
	}
	defer socks.close() // those no listener took: the new config dropped them
	d.dataPorts.adopt(socks, d.log)
	adminFile := socks.takeOne(adminProto, cfg.Admin.Listen)
	err = d.startAdmin(cfg.Admin.Listen, adminFile)
	if adminFile != nil {
		adminFile.Close()
	}
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.started = time.Now()
	d.mu.Unlock()
	d.tls.stage(files)
	opened, err := d.openAll(cfg.Listeners, socks, nil)
	if err != nil {
		d.tls.stage(tlsFiles{})
		d.stopAdmin()
		d.serving.Wait()
		// The listeners opened before the one that failed made the pool's
		// parker (an epoll set); closing them stopped the front they held,
		// not the parker, which lives as long as the pool.
		d.release()
		return err
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		for _, in := range opened {
			_ = in.srv.Close()
		}
		return ErrStopped
	}
	d.storeACL(list)
	for _, in := range opened {
		d.running[in.spec.Name] = in
	}
	d.keepDataTablesLocked() // an upgrade handed over the ranges of the old config too
	d.serving.Add(len(opened) + 1)
	d.mu.Unlock()
	d.commitTLS(true)
	for _, in := range opened {
		go d.serveListener(in)
	}
	go d.flushACLs()
	d.counts.lastOK.Store(time.Now().UnixNano())
	d.warn(cfg, list)
	d.ready.Store(true)
	d.log.Info().Int("listeners", len(opened)).Str("config", cfg.Path).Bool("upgrade", d.takeover != nil).
		Msg("relay started")
	if d.notify != nil && d.takeover == nil {
		_ = d.notify.Ready() // on an upgrade the old process names this one MAINPID, ready
	}
	return nil
}

// Ready reports whether every configured listener is bound (for /healthz).
func (d *Daemon) Ready() bool { return d.ready.Load() }

// Draining reports whether the daemon has stopped taking new connections
// and is letting the open ones finish (for /healthz).
func (d *Daemon) Draining() bool { return d.drainingAll.Load() }

// openAll binds each listener, taking over the sockets in socks that are
// on its addresses; a UDP listener also serves the open sessions of the
// UDP relays among retiring, an exclusive raw one shares the printer
// queues of the raw listeners among them, and each knows which upstreams
// the retiring one of its name found down. When one fails, the ones already
// opened are closed, so that a failed start or reload leaves nothing
// half-done. It binds: never call it with d.mu held.
func (d *Daemon) openAll(specs []config.Listener, socks sockets, retiring []*instance) ([]*instance, error) {
	replaces := replacing(retiring)
	var opened []*instance
	for _, spec := range specs {
		inherit := socks.take(spec)
		in, err := d.open(spec, inherit, replaces)
		for _, f := range inherit {
			if f != nil {
				f.Close()
			}
		}
		if err != nil {
			for _, o := range opened {
				_ = o.srv.Close()
			}
			if nerr := notLocal(spec.Mode.Proto(), err); nerr != nil {
				return nil, fmt.Errorf("listener %s: %w", spec.Name, nerr)
			}
			explain := inUse
			if retiring != nil {
				explain = heldByItself // only a retiring listener of this relay can hold it so
			}
			return nil, fmt.Errorf("listener %s: %w", spec.Name, explain(spec.Mode.Proto(), err))
		}
		opened = append(opened, in)
	}
	return opened, nil
}

// serveListener runs in.srv.Serve; the caller has counted it in d.serving.
func (d *Daemon) serveListener(in *instance) {
	defer d.serving.Done()
	err := in.srv.Serve()
	if err != nil && !isClosed(err) {
		in.down.Store(true)
		d.log.Error().Err(err).Str("listener", in.spec.Name).Msg("listener stopped")
	}
}

// Shutdown stops accepting on every listener and drains them, and the ones
// a reload retired, until ctx is done, then closes what is left. It returns
// when every goroutine is gone.
func (d *Daemon) Shutdown(ctx context.Context) error {
	if d.notify != nil && !d.handedOver.Load() {
		_ = d.notify.Stopping()
	}
	d.drainingAll.Store(true)
	d.mu.Lock()
	d.stopped = true
	all := make([]*instance, 0, len(d.running)+len(d.draining))
	for in := range d.draining {
		all = append(all, in) // retired by a reload: its drain ends with this grace
	}
	for name, in := range d.running {
		all = append(all, in)
		delete(d.running, name)
		d.draining[in] = true // still counted by Snapshots while it drains
	}
	d.ready.Store(false)
	d.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, in := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = in.srv.Shutdown(ctx)
		}()
	}
	wg.Wait()
	d.stopLoops()
	d.stopAdmin()
	d.serving.Wait()
	d.release()
	err := errors.Join(errs...)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = nil // the grace period ran out and the rest was closed: that is the contract
	}
	d.log.Info().Msg("relay stopped")
	return err
}

// Close closes every listener and connection now. It holds no lock while
// the listeners close (a scrape takes d.mu).
func (d *Daemon) Close() error {
	d.mu.Lock()
	d.stopped = true
	all := make([]*instance, 0, len(d.running)+len(d.draining))
	for name, in := range d.running {
		all = append(all, in)
		delete(d.running, name)
	}
	for in := range d.draining {
		all = append(all, in)
	}
	d.ready.Store(false)
	d.mu.Unlock()
	var errs []error
	for _, in := range all {
		errs = append(errs, in.srv.Close())
	}
	d.stopLoops()
	d.stopAdmin()
	d.serving.Wait()
	d.release()
	return errors.Join(errs...)
}

// Addrs returns the bound addresses of the named listener (tests bind port 0).
func (d *Daemon) Addrs(name string) []net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if in, ok := d.running[name]; ok {
		return in.srv.Addrs()
	}
	return nil
}

// Config returns the config in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// stopLoops ends the daemon's background loops, once.
func (d *Daemon) stopLoops() { d.stop.Do(func() { close(d.done) }) }

// release frees what outlives the listeners: the pipe pool, the FTP
// data-port tables and the DNS cache.
func (d *Daemon) release() {
	d.pipes.Close()
	if err := d.dataPorts.close(); err != nil {
		d.log.Warn().Err(err).Msg("ftp data-port tables")
	}
	if d.ownDNS {
		d.dns.Close()
	}
}

// aclFlushInterval is how often suppressed ACL rejections are summarised in
// the log when a scan has stopped (a guard summarises by itself while
// rejections keep coming).
const aclFlushInterval = 10 * time.Second

// flushACLs logs the counts of sampled-away ACL rejections until the daemon
// stops, and once more at the end.
func (d *Daemon) flushACLs() {
	defer d.serving.Done()
	t := time.NewTicker(aclFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			d.acls.Flush()
		case <-d.done:
			d.acls.Flush()
			return
		}
	}
}
