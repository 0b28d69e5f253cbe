package ftppassive

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/edgerelay/relay/forward"
)

// dataConn is one relay-owned data port: a listener that takes exactly one
// connection from peer, then dials target and relays.
//
// Passive mode: the port faces the client (peer: the control client's IP;
// target: the server's data port). Active mode: it faces the server (peer:
// the server's IP; target: the client's PORT/EPRT address).
type dataConn struct {
	s       *session
	ln      *net.TCPListener
	local   netip.AddrPort // the port as bound
	release func()         // gives the port back to the pool
	peer    netip.Addr
	target  netip.AddrPort
	passive bool
	gone    chan struct{} // closed once the listener is closed and the port released, or a transfer runs

	// Active mode only: the reply loop holds a transfer's 1xx/2xx back
	// until the relay's connection to the client's data port is up, as a
	// direct server's would be (see session.awaitTransfer).
	accepted  chan struct{} // closed when the server's connection was accepted
	settled   chan struct{} // closed when clientErr is set, or the port closed unused
	clientErr error         // the dial to the client failed; nil: connected (or unused)

	// Passive mode only: the dial to the server's data port, started when
	// the server named it (it listens from then on) rather than when the
	// client connects, so the client's connection finds its other half
	// ready. serve always waits for it, and closes its result unless a
	// transfer takes it.
	dialCtx    context.Context
	cancelDial context.CancelFunc
	dialOnce   sync.Once
	dialed     chan struct{} // closed when out and dialErr are set
	out        net.Conn
	dialErr    error
}

// addr is the relay's own address of this port, as told to the other side.
func (d *dataConn) addr() netip.AddrPort { return d.local }

// openData opens a data port on bindIP and starts waiting for peer. It
// replaces the session's previous port if nobody connected to that one:
// a client that asks PASV twice has given up on the first.
func (s *session) openData(bindIP, peer netip.Addr, target netip.AddrPort, passive bool) (*dataConn, error) {
	s.closeIdleData()
	ln, release, err := s.p.ports.listen(bindIP)
	if err != nil {
		s.p.stats.DataFailed.Add(1)
		return nil, err
	}
	d := &dataConn{
		s:       s,
		ln:      ln,
		local:   addrPortOf(ln.Addr()),
		release: release,
		peer:    peer,
		target:  target,
		passive: passive,
		gone:    make(chan struct{}),
	}
	ln.SetDeadline(time.Now().Add(s.p.cfg.dataTimeout()))

	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		ln.Close()
		release()
		return nil, errSessionEnded
	}
	// The command loop (PORT/EPRT) and the reply loop (227/229) may open
	// ports at the same time; the port one of them opened after the
	// other's closeIdleData would otherwise drop out of sight and live
	// until data_timeout, holding the session's end (and Close) up.
	prev := s.idleData
	s.idleData = d
	// The next transfer command is the one this port serves (active), or
	// none (passive: the client connects itself).
	s.armed = nil
	if !passive {
		s.armed = d
	}
	s.dataWG.Add(1)
	s.mu.Unlock()
	if prev != nil {
		// Waited for as in closeIdleData: the port is back in the pool
		// (and counted so) when the one replacing it is handed out.
		prev.ln.Close()
		<-prev.gone
	}
	if passive {
		d.dialCtx, d.cancelDial = context.WithCancel(s.ctx)
		d.dialed = make(chan struct{})
	} else {
		d.accepted, d.settled = make(chan struct{}), make(chan struct{})
	}
	go d.serve()
	return d, nil
}

// startDial starts the passive-mode dial to the server's data port, once.
// The reply loop calls it right after the client's 227/229 is written (a
// dial started before would compete with that write for the CPU); the
// client's connection calls it too, in case it came first.
func (d *dataConn) startDial() {
	d.dialOnce.Do(func() { go d.dialServer() })
}

// dialServer is the passive-mode dial; serve waits for it to end.
func (d *dataConn) dialServer() {
	defer close(d.dialed)
	d.out, d.dialErr = d.s.p.dial(d.dialCtx, d.target.String())
}

// dropDial ends the dial of a port nobody used and closes what it
// connected, so the server's data port is not held open.
func (d *dataConn) dropDial() {
	if d.dialed == nil {
		return
	}
	d.cancelDial()
	d.dialOnce.Do(func() { close(d.dialed) }) // never started
	<-d.dialed
	if d.out != nil {
		d.out.Close()
	}
}

// closeIdleData closes the session's data port nobody connected to, if
// any, and waits until its port is back in the pool, so that the next
// data port may reuse it (a one-port range must still work).
func (s *session) closeIdleData() {
	s.mu.Lock()
	d := s.idleData
	s.idleData = nil
	s.mu.Unlock()
	if d == nil {
		return
	}
	d.ln.Close()
	<-d.gone
}

// serve waits for the one connection this port is for, then starts its
// relay; the relay's end (or serve, if nothing is relayed) releases the
// port and tells the session the data goroutine is done.
func (d *dataConn) serve() {
	conn, err := d.accept()
	// Accept has returned, so closing the listener now closes its socket
	// at once and the port is free again.
	d.ln.Close()
	d.s.mu.Lock()
	if d.s.idleData == d {
		d.s.idleData = nil
	}
	d.s.mu.Unlock()
	if err != nil {
		d.dropDial()
		// Counted, released and logged before anyone waiting on gone (or
		// for the log line) goes on.
		d.s.p.stats.DataFailed.Add(1)
		d.release()
		ev := d.s.log.Debug()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			ev = d.s.log.Info()
			err = errors.New("nobody connected within data_timeout")
		}
		ev.Str("port", d.local.String()).Str("why", err.Error()).Msg("data port closed unused")
		close(d.gone)
		d.settle(nil)
		d.s.dataWG.Done()
		return
	}
	close(d.gone)
	if d.accepted != nil {
		close(d.accepted)
	}
	d.relay(conn)
}

// done ends a data connection: the port goes back and the session stops
// waiting for it.
func (d *dataConn) done() {
	d.release()
	d.s.dataWG.Done()
}

// accept returns the first connection from d.peer. Connections from any
// other address are closed at once: on a shared network a neighbour could
// otherwise race the client to a passive port and take (or inject) the
// file. The rightful peer can still connect afterwards.
func (d *dataConn) accept() (*net.TCPConn, error) {
	for {
		c, err := d.ln.AcceptTCP()
		if err != nil {
			return nil, err
		}
		from := addrPortOf(c.RemoteAddr())
		if from.Addr() == d.peer {
			return c, nil
		}
		c.SetLinger(0)
		c.Close()
		d.s.p.stats.DataTheftAttempts.Add(1)
		d.s.refuseThief(from, d.local, d.peer)
	}
}

// theftBurst is how many theft warnings a second the proxy writes itself
// when Config.Refused is nil.
const theftBurst = 5

// refuseThief logs a connection to data port from a foreign address,
// through Config.Refused when set.
func (s *session) refuseThief(from, port netip.AddrPort, expected netip.Addr) {
	if s.p.cfg.Refused != nil {
		s.p.cfg.Refused(from, "data_theft: connection to ftp data port "+port.String()+", which is "+expected.String()+"'s")
		return
	}
	log := s.log.Sample(s.p.thefts)
	log.Warn().Str("from", from.String()).Str("port", port.String()).
		Str("expected", expected.String()).
		Msg("data connection from a foreign address refused")
}

// settle tells the reply loop how the active-mode connection to the
// client ended; counters and log come first, so a test that saw the
// client's reply sees them too.
func (d *dataConn) settle(err error) {
	if d.settled != nil {
		d.clientErr = err
		close(d.settled)
	}
}

// relay dials the other side of the transfer and moves the bytes.
func (d *dataConn) relay(in *net.TCPConn) {
	s := d.s
	var out net.Conn
	var err error
	if d.passive {
		d.startDial()
		<-d.dialed
		d.cancelDial()
		out, err = d.out, d.dialErr
	} else {
		// The client expects its data from the address it connected to.
		out, err = s.p.dialClient(s.ctx, s.clientLocal, d.target)
	}
	if err != nil {
		in.Close()
		s.p.stats.DialFailures.Add(1)
		s.p.stats.DataFailed.Add(1)
		s.log.Warn().Err(err).Str("target", d.target.String()).Msg("data connection: dial failed")
		d.settle(err)
		d.done()
		return
	}
	s.p.stats.DataOpened.Add(1)
	s.transfers.Add(1)
	d.settle(nil)
	up, down := &s.p.stats.DataBytesToUpstream, &s.p.stats.DataBytesToClient
	opt := forward.PipeOptions{IdleTimeout: s.idle, Progress: s.progress, AtoB: up, BtoA: down, Pool: s.p.pipes}
	if !d.passive {
		// in is the server's connection here.
		opt.AtoB, opt.BtoA = down, up
	}
	start := time.Now()
	// Start, not Pipe: a transfer that stalls (a paused download, a
	// client that reads slowly) parks in the pool like a tcp forward and
	// holds no goroutine meanwhile.
	forward.Start(s.ctx, in, out, opt, func(res forward.Result) {
		d.ended(res, start)
	})
}

// ended accounts and logs a finished transfer and ends the data
// connection.
func (d *dataConn) ended(res forward.Result, start time.Time) {
	s := d.s
	toServer, toClient := res.AtoB, res.BtoA
	if !d.passive {
		toServer, toClient = toClient, toServer
	}
	s.dataUp.Add(uint64(toServer))
	s.dataDown.Add(uint64(toClient))
	s.log.Debug().Bool("passive", d.passive).Str("port", d.local.String()).
		Int64("bytes_up", toServer).Int64("bytes_down", toClient).
		Dur("duration_ms", time.Since(start)).Str("end", res.End).
		Msg("data transfer")
	d.done()
}
