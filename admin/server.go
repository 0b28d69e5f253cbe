package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/internal/listennet"
	"github.com/edgerelay/relay/internal/sockfile"
)

// ErrClosed is returned by Serve after Close or Shutdown.
var ErrClosed = errors.New("admin: server closed")

// Config configures a Server.
type Config struct {
	// Listen is the host:port to bind, normally loopback. The daemon leaves
	// the endpoint off (builds no Server) when admin.listen is empty.
	Listen string
	// Inherit, when set, is a listen socket for Listen to take over
	// instead of binding (handed over by the process a binary upgrade
	// replaces). The Server dups it; the caller closes it.
	Inherit *os.File
	// Gather returns one Snapshot per running listener instance; it is
	// called on every scrape, possibly from several scrapes at once, so it
	// must be safe for concurrent use. nil: no listener series.
	Gather func() []Snapshot
	// Relay returns the daemon's facts beyond its listeners (version,
	// config, reloads, the ACL's counts and recent rejections), for
	// /metrics and /status.json; same rules as Gather. nil: none known.
	Relay func() Relay
	// Ready reports whether every configured listener is bound; /healthz
	// answers 503 until it does. nil: always ready.
	Ready func() bool
	// Draining reports that the relay has stopped accepting and is letting
	// open connections finish; /healthz then answers 503 "draining", so a
	// load balancer stops sending new clients. nil: never.
	Draining func() bool
	// Allow decides, per request, whether the client may use the endpoint;
	// a refused one gets 403 on every path. nil: every client that can
	// reach the address.
	Allow func(netip.AddrPort) bool
	// Hosts returns the names, besides IP literals, localhost and the
	// machine's hostname, that a request's Host header may carry
	// (admin.hosts); any other gets 421 on every path, which is what stops
	// DNS rebinding (see hostCheck). It is called per request, so a reload
	// changes it without rebinding. nil: none.
	Hosts func() []string
	// Hostname returns the machine's name; the Host header may carry it or
	// its first label. It is called per request, so a renamed box is
	// followed. nil: os.Hostname.
	Hostname func() (string, error)
	// Collectors are registered beside the relay, Go and process
	// collectors, e.g. the daemon's reload counters and UDP receive
	// buffers (README lists their families). nil: none.
	Collectors []prometheus.Collector
	// Log receives HTTP server and metric collection errors, at warn level.
	// Zero: discard (a zero zerolog.Logger has no writer and drops events).
	Log zerolog.Logger
}

// Server serves /metrics, /healthz, /status.json and the status page. Every
// route is a GET: nothing on the endpoint changes the relay's state.
type Server struct {
	listen  string
	inherit *os.File
	srv     *http.Server

	mu       sync.Mutex // guards the following
	ln       net.Listener
	serving  bool // Serve handed ln to http.Server, which closes it
	closed   bool
	handlers sync.WaitGroup // requests in flight; Add only under mu while !closed
}

// requestLimit bounds concurrent /metrics scrapes: one Prometheus and a
// curl or two is the expected load, and each scrape walks every listener.
const requestLimit = 4

// New builds the registry and handlers. It binds nothing and starts no
// goroutine; Listen binds.
func New(cfg Config) (*Server, error) {
	adminLog := cfg.Log.With().Str("component", "admin").Logger()
	errLog := log.New(warnWriter{adminLog}, "", 0)
	hosts := newHostCheck(cfg, adminLog)
	reg := prometheus.NewRegistry()
	cs := append([]prometheus.Collector{
		&collector{d: newDescs(), gather: cfg.Gather, relay: cfg.Relay, ready: cfg.Ready},
		hosts.refused,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, cfg.Collectors...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: register collector: %w", err)
		}
	}
	s := &Server{listen: cfg.Listen, inherit: cfg.Inherit}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            errLog,
		ErrorHandling:       promhttp.ContinueOnError, // one bad series must not hide the rest
		MaxRequestsInFlight: requestLimit,
		// No Timeout: promhttp would run the gathering in a goroutine of
		// its own that Close could not wait for.
	}))
	mux.HandleFunc("GET /healthz", healthz(cfg.Ready, cfg.Draining))
	sr := &statusReader{gather: cfg.Gather, relay: cfg.Relay, ready: cfg.Ready, now: time.Now}
	mux.HandleFunc("GET /status.json", sr.serveJSON)
	mux.HandleFunc("GET /{$}", servePage("index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /status.css", servePage("status.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /status.js", servePage("status.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /patch.js", servePage("patch.js", "text/javascript; charset=utf-8"))
	s.srv = &http.Server{
		// Who (the ACL) before which name: a client the ACL refuses
		// learns nothing about the endpoint's names.
		Handler:           s.track(guard(cfg.Allow, hosts.wrap(mux))),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errLog,
	}
	return s, nil
}

// Handler returns the endpoint's handler, for tests and for mounting
// elsewhere.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Listen binds the configured address.
func (s *Server) Listen() error {
	var ln net.Listener
	var err error
	if s.inherit != nil {
		ln, err = net.FileListener(s.inherit)
	} else {
		ln, err = net.Listen(listennet.TCP(s.listen), s.listen)
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err) // net's error names the address
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ln != nil {
		ln.Close()
		if s.closed {
			return ErrClosed
		}
		return fmt.Errorf("admin: already listening on %s", s.ln.Addr())
	}
	s.ln = ln
	return nil
}

// File returns a duplicate of the listen socket, for the process a binary
// upgrade starts (Config.Inherit); the caller closes it.
func (s *Server) File() (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tl, ok := s.ln.(*net.TCPListener)
	if !ok {
		return nil, errors.New("admin: not listening")
	}
	return sockfile.Dup(tl, tl.Addr().String()) // not tl.File: see sockfile
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve answers requests until Close or Shutdown, then returns ErrClosed.
func (s *Server) Serve() error {
	s.mu.Lock()
	ln, closed, serving := s.ln, s.closed, s.serving
	s.serving = ln != nil && !closed
	s.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case ln == nil:
		return errors.New("admin: Serve before Listen")
	case serving:
		return errors.New("admin: Serve called twice")
	}
	err := s.srv.Serve(ln)
	s.mu.Lock()
	closed = s.closed
	s.mu.Unlock()
	// Close may shut the listener before http.Server marks itself closed,
	// so Accept's error can arrive first.
	if closed || errors.Is(err, http.ErrServerClosed) {
		return ErrClosed
	}
	return fmt.Errorf("admin: serve: %w", err)
}

// Shutdown stops accepting and lets requests in flight finish until ctx is
// done, then closes what is left. It returns when every handler has
// returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.markClosed()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	s.handlers.Wait()
	return err
}

// Close closes the listener and every connection now and waits for running
// handlers. It is safe to call more than once.
func (s *Server) Close() error {
	s.markClosed()
	err := s.srv.Close()
	s.handlers.Wait()
	return err
}

// markClosed stops new handlers from starting, and closes a listener that
// Serve never took over: http.Server closes only the ones it serves, even
// when Serve starts after Close.
func (s *Server) markClosed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.ln != nil && !s.serving {
		s.ln.Close()
	}
}

// track counts handlers in flight so that Close can wait for them;
// http.Server.Close itself does not.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		s.handlers.Add(1)
		s.mu.Unlock()
		defer s.handlers.Done()
		h.ServeHTTP(w, r)
	})
}

// healthz answers 200 "ok" once ready reports true, 503 before, and 503
// "draining" once draining does.
func healthz(ready, draining func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if draining != nil && draining() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "draining\n")
			return
		}
		if ready != nil && !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: listeners are not all bound\n")
			return
		}
		io.WriteString(w, "ok\n")
	}
}

// warnWriter logs each line the standard library logger writes (the HTTP
// server's and promhttp's error logs) as one warn event.
type warnWriter struct{ log zerolog.Logger }

func (w warnWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
