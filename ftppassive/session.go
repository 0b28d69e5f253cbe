package ftppassive

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/upstream"
)

var (
	errIdle    = errors.New("ftppassive: control connection idle")
	errAborted = errors.New("ftppassive: session aborted by the relay")
)

// maxOutstanding bounds the commands sent to the server (or answered
// locally) whose replies have not come back. A client that pipelines more
// waits: TCP back pressure, not memory.
const maxOutstanding = 256

// session is one control connection: client <-> relay <-> server.
//
// Two goroutines run it. The command loop (the forward handler's goroutine)
// reads client lines and writes them, or their rewrites, to the server; the
// reply loop reads server replies and writes them, or their rewrites, to the
// client. They meet in the FIFO of outstanding commands: the command loop
// appends an entry before it writes the command, the reply loop pops the
// head when the command's final reply has been written.
type session struct {
	p           *Proxy
	ctx         context.Context
	log         zerolog.Logger
	client      *net.TCPConn
	server      net.Conn
	clientAddr  netip.AddrPort // the control client
	clientLocal netip.Addr     // the relay address the client connected to
	serverAddr  netip.AddrPort // the FTP server
	serverLocal netip.Addr     // the relay address the server sees
	idle        time.Duration

	lastActive atomic.Int64           // unix nanoseconds of the last control line or data chunk
	slots      chan struct{}          // one per FIFO entry; capacity maxOutstanding
	dead       chan struct{}          // closed when the reply loop has ended
	dataWG     sync.WaitGroup         // data-connection goroutines
	transfers  atomic.Int64           // data connections relayed
	dataUp     atomic.Uint64          // data bytes client -> server, this session
	dataDown   atomic.Uint64          // data bytes server -> client, this session
	endReason  atomic.Pointer[string] // first reason the session ended, for the log
	abortOnce  sync.Once
	aborted    atomic.Bool // abort has begun: no more reads from the client but the drain

	// wmu serialises writes to the client and keeps local replies in
	// order with the server's. It is taken before mu, never after.
	wmu sync.Mutex
	smu sync.Mutex // serialises writes to the server

	mu       sync.Mutex // guards the following
	fifo     []*pending
	midReply bool        // the reply loop is streaming a reply nobody asked for
	greeted  bool        // the server's greeting (its first final reply) is complete
	epsvAll  bool        // the client sent EPSV ALL
	epsv     epsvSupport // what the server answered to EPSV so far
	idleData *dataConn   // the data port opened last and not connected yet
	armed    *dataConn   // the active-mode port the next transfer command uses
	ended    bool        // the loops are done; open no more data ports
}

type epsvSupport uint8

const (
	epsvUnknown epsvSupport = iota
	epsvWorks
	epsvRefused
)

// serveControl is the forward.Handler: it runs one session from dial to
// the end of its last data transfer.
func (p *Proxy) serveControl(ctx context.Context, client *net.TCPConn, index int) {
	start := time.Now()
	defer client.Close()
	log := p.log.With().Str("listen", client.LocalAddr().String()).
		Str("client", client.RemoteAddr().String()).Logger()
	server, err := p.dialUpstream(ctx, index)
	if err != nil {
		p.noServer(ctx, client, log, index, err, start)
		return
	}
	p.stats.Sessions.Add(1)
	setOOBInline(client)
	s := &session{
		p:           p,
		ctx:         ctx,
		log:         log.With().Str("upstream", server.RemoteAddr().String()).Logger(),
		client:      client,
		server:      server,
		clientAddr:  addrPortOf(client.RemoteAddr()),
		clientLocal: addrPortOf(client.LocalAddr()).Addr(),
		serverAddr:  addrPortOf(server.RemoteAddr()),
		serverLocal: addrPortOf(server.LocalAddr()).Addr(),
		idle:        p.cfg.idleTimeout(),
		slots:       make(chan struct{}, maxOutstanding),
		dead:        make(chan struct{}),
	}
	s.touch()
	s.run()
	s.log.Info().
		Dur("duration_ms", time.Since(start)).
		Int64("transfers", s.transfers.Load()).
		Uint64("data_bytes_up", s.dataUp.Load()).
		Uint64("data_bytes_down", s.dataDown.Load()).
		Str("end", s.reason()).
		Msg("ftp session")
}

// noServer ends a control connection whose server dial failed: a 421 and
// one line, unless Close or Shutdown cut the dial short.
func (p *Proxy) noServer(ctx context.Context, client *net.TCPConn, log zerolog.Logger, index int, err error, start time.Time) {
	if ctx.Err() != nil {
		// No server failed: neither the 421 counter nor a warning says
		// one did, and the session's line says shutdown, as forward's
		// line for a tcp client does.
		log.Info().Str("upstream", strings.Join(p.cfg.Upstreams[index], ",")).
			Dur("duration_ms", time.Since(start)).Int64("transfers", 0).
			Uint64("data_bytes_up", 0).Uint64("data_bytes_down", 0).
			Str("end", forward.EndShutdown).Msg("ftp session")
		return
	}
	p.stats.UpstreamFailed.Add(1)
	ev, msg := log.Warn(), "ftp server unreachable; answered 421"
	switch {
	case errors.Is(err, upstream.ErrAllDown):
		ev = log.Info() // the outage was logged once by the upstream Set
	case shortOfResources(err):
		// No server was at fault and none was marked down: say so, or
		// the admin goes looking at the wrong box (as forward does).
		msg = "relay out of descriptors, buffers or ports; answered 421"
	}
	ev.Err(err).Msg(msg)
	client.SetWriteDeadline(time.Now().Add(p.cfg.connectTimeout()))
	client.Write([]byte("421 Service not available: the FTP server cannot be reached.\r\n"))
	client.CloseWrite()
}

// run relays the control channel until one side ends it, then waits for
// the session's data transfers.
func (s *session) run() {
	stop := context.AfterFunc(s.ctx, func() {
		s.setReason("shutdown")
		s.client.Close()
		s.server.Close()
	})
	defer stop()

	cr := newLineReader(s.client, maxLine)
	sr := newLineReader(s.server, maxLine)
	go s.replyLoop(sr)
	opaque := s.commandLoop(cr)
	<-s.dead
	if opaque {
		s.relayOpaque(cr)
	}
	s.client.Close()
	s.server.Close()

	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.closeIdleData()
	s.dataWG.Wait()
}

// commandLoop relays client lines until the client is done. It reports
// whether the channel turned opaque (AUTH TLS accepted).
func (s *session) commandLoop(cr *lineReader) (opaque bool) {
	for {
		line, err := s.readLine(cr, s.client)
		if err != nil {
			s.endCommands(err)
			return false
		}
		wait, err := s.handleCommand(line)
		if err != nil {
			s.endCommands(err)
			return false
		}
		if wait == nil {
			continue
		}
		select {
		case opaque := <-wait:
			if opaque {
				return true
			}
		case <-s.dead:
			// The reply loop sends the outcome before it ends; it may
			// be there even though dead was picked.
			select {
			case opaque := <-wait:
				return opaque
			default:
				return false
			}
		}
	}
}

// endCommands handles the end of the client's side: EOF is passed on as a
// half close so the server can still answer a QUIT; anything else ends the
// session.
func (s *session) endCommands(err error) {
	switch {
	case err == io.EOF:
		s.setReason("client_closed")
		if cw, ok := s.server.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			return
		}
		s.server.Close()
	case errors.Is(err, errLineTooLong):
		s.p.stats.LinesTooLong.Add(1)
		s.log.Warn().Int("limit", maxLine).Msg("client sent a control line longer than the limit; session closed")
		s.setReason("client_line_too_long")
		s.abort("421 Command line too long; closing control connection.\r\n")
		s.drainClient()
	case errors.Is(err, errIdle):
		s.setReason("idle")
		s.abort("421 Idle timeout; closing control connection.\r\n")
		s.drainClient()
	case errors.Is(err, errAborted), errors.Is(err, errSessionEnded), s.aborted.Load():
		// The reply loop ended the session while this loop waited for a
		// FIFO slot or wrote to the closed server: the client may have
		// more pipelined input unread, and a plain close would reset it.
		s.abort("") // waits for the reply loop's abort to finish
		s.drainClient()
	default:
		s.setReason("client_error")
		s.client.Close()
		s.server.Close()
	}
}

// abortGrace bounds how long an aborted session waits for the client to
// take its last reply and hang up.
const abortGrace = time.Second

// abort ends the session from the relay's side (or after the server left)
// without a reset: the reply if any, then FIN; the client's unread bytes
// are drained (drainClient) for up to abortGrace, since closing a socket
// with unread input sends a RST that can destroy the last reply in flight.
//
// Only the first call acts; a concurrent one waits until it is done, so that
// a caller who then drains and closes the client cannot overtake the reply.
func (s *session) abort(reply string) {
	s.abortOnce.Do(func() {
		s.aborted.Store(true)
		s.server.Close()
		if reply != "" {
			s.client.SetWriteDeadline(time.Now().Add(abortGrace))
			s.client.Write([]byte(reply))
		}
		s.client.CloseWrite()
		s.client.SetReadDeadline(time.Now().Add(abortGrace))
	})
}

// drainClient discards client input until the client closes or the abort
// grace ends, then closes the client. Only the command loop reads the
// client, so only it calls this.
func (s *session) drainClient() {
	io.Copy(io.Discard, io.LimitReader(s.client, 1<<20))
	s.client.Close()
}

// relayOpaque turns the session into a plain TCP relay (after AUTH TLS).
// Bytes the line readers had already buffered go first.
func (s *session) relayOpaque(cr *lineReader) {
	s.p.stats.Opaque.Add(1)
	if s.p.tlsNoted.CompareAndSwap(false, true) {
		s.p.log.Warn().Msg("AUTH TLS/SSL: control channel encrypted, relayed as plain TCP; " +
			"the relay cannot rewrite PASV any more, so passive data needs a 1:1 tcp range listener " +
			"for the server's passive ports plus the server's masquerade address set to the relay's public IP")
	}
	s.log.Info().Msg("control channel encrypted after AUTH; relaying it as plain TCP")
	if b := cr.buffered(); len(b) > 0 {
		if _, err := s.writeServer(b); err != nil {
			s.setReason("server_error")
			return
		}
	}
	s.client.SetDeadline(time.Time{})
	s.server.SetDeadline(time.Time{})
	res := forward.Pipe(s.ctx, s.client, s.server, forward.PipeOptions{
		IdleTimeout: s.idle,
		Progress:    s.progress,
		AtoB:        &s.p.stats.ControlBytesToUpstream,
		BtoA:        &s.p.stats.ControlBytesToClient,
		Pool:        s.p.pipes,
	})
	s.setReason("tls_" + res.End)
}

// readLine reads one line from c. The control connection counts as idle
// only when neither it nor any of its data connections moved a byte for
// the idle timeout, so a deadline that fires during a long transfer is
// simply moved on.
func (s *session) readLine(lr *lineReader, c net.Conn) ([]byte, error) {
	for {
		if s.aborted.Load() {
			return nil, errAborted // keep abort's read deadline
		}
		last := time.Unix(0, s.lastActive.Load())
		c.SetReadDeadline(last.Add(s.idle))
		line, err := lr.readLine()
		if err == nil {
			s.touch()
			return line, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
		if time.Since(time.Unix(0, s.lastActive.Load())) >= s.idle {
			return nil, errIdle
		}
	}
}

func (s *session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// progress is the data pipes' Progress hook: moving data keeps the control
// connection alive.
func (s *session) progress(int) { s.touch() }

func (s *session) setReason(r string) { s.endReason.CompareAndSwap(nil, &r) }

func (s *session) reason() string {
	if r := s.endReason.Load(); r != nil {
		return *r
	}
	return "eof"
}

// writeClient writes b to the client; the caller holds wmu.
func (s *session) writeClient(b []byte) error {
	s.client.SetWriteDeadline(time.Now().Add(s.idle))
	n, err := s.client.Write(b)
	s.p.stats.ControlBytesToClient.Add(uint64(n))
	return err
}

func (s *session) writeServer(b []byte) (int, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	s.server.SetWriteDeadline(time.Now().Add(s.idle))
	n, err := s.server.Write(b)
	s.p.stats.ControlBytesToUpstream.Add(uint64(n))
	return n, err
}
