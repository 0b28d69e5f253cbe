package forward

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/edgerelay/relay/upstream"
)

// DefaultQueueTimeout is the queue timeout of a zero Raw (the only copy;
// config applies it).
const DefaultQueueTimeout = 30 * time.Second

// Raw configures raw mode, a byte-exact pass-through for small devices such
// as ticket printers (Theatre Manager prints on TCP 10001). Bytes move as
// soon as they arrive: TCP_NODELAY on both sides (Go's default, kept), no
// batching in the relay, and the device side gets keepalive and
// TCP_USER_TIMEOUT so that a powered-off device ends the session in
// seconds.
type Raw struct {
	// Exclusive lets one client at a time talk to the upstream of a port;
	// others wait in arrival order. A waiting client may already send its
	// job: the bytes stay in its socket buffer until its turn.
	Exclusive bool
	// QueueTimeout closes a client that waited this long. Zero: 30s.
	QueueTimeout time.Duration
	// UserTimeout is the device side's TCP_USER_TIMEOUT: sent bytes
	// unacknowledged (or a zero window) for this long end the session;
	// keepalive probes start after this much silence. Zero: the kernel's
	// (no TCP_USER_TIMEOUT, so ~15 minutes of retransmission, and the
	// keepalive of a tcp listener). config's default is 10s.
	UserTimeout time.Duration
}

func (r *Raw) queueTimeout() time.Duration {
	if r.QueueTimeout <= 0 {
		return DefaultQueueTimeout
	}
	return r.QueueTimeout
}

// rawState is the raw-mode part of a Listener: per port, the turn queue
// (exclusive mode). Whether the device is down is the upstream Set's to
// know.
type rawState struct {
	cfg    Raw
	queues []*turnQueue // per port; nil entries unless Exclusive
}

func newRawState(cfg *Raw, ports int) *rawState {
	s := &rawState{cfg: *cfg, queues: make([]*turnQueue, ports)}
	if cfg.Exclusive {
		for i := range s.queues {
			s.queues[i] = &turnQueue{}
		}
	}
	return s
}

// shareTurns takes, for each exclusive port of cfg, the turn queue of the
// same port (Listen entry and upstreams) of an exclusive listener cfg
// replaces. Why: the queue is what keeps the device to one client at a
// time, and a reload that changed the listener (its queue or user timeout,
// say) leaves the retired one printing its job; a fresh queue would give
// the successor's first client the device beside it.
func (s *rawState) shareTurns(cfg *Config) {
	for i, q := range s.queues {
		if q == nil {
			continue
		}
		for _, old := range cfg.Replaces {
			if old.raw == nil {
				continue
			}
			for j, addr := range old.cfg.Listen {
				if addr == cfg.Listen[i] && old.raw.queues[j] != nil &&
					slices.Equal(old.cfg.Upstreams[j], cfg.Upstreams[i]) {
					s.queues[i] = old.raw.queues[j]
				}
			}
		}
	}
}

// serveRaw runs one raw client: wait for the turn (exclusive), dial the
// device and start the pipe; its end writes the job line, passes the turn
// on and releases the connection's slot. It returns once the pipe has
// started, so that an idle job parks like a tcp forward (see the package
// doc) and holds no goroutine.
func (l *Listener) serveRaw(c net.Conn, a accepted, sec secured) {
	client, index := a.client, a.index
	start := time.Now()
	job := &rawJob{l: l, client: client, index: index, tls: sec}
	if q := l.raw.queues[index]; q != nil {
		// Behind TLS the hang-up watch peeks the socket under it: TLS
		// records waiting there are the client's job as much as bytes are.
		// Records the handshake already read off the socket are asked of
		// the TLS conn (readAhead) before a bare FIN counts as hanging up.
		ahead := newReadAhead(c)
		t, end := l.waitTurn(tcpOf(c).(*net.TCPConn), q, ahead)
		c = ahead.conn(c)
		job.queued = time.Since(start)
		if end != "" {
			c.Close()
			job.log(end, nil, Result{}, 0)
			l.connDone(client)
			return
		}
		job.queue, job.turn = q, t
		q.hold(l.raw, client)
	}
	up, target, header, err := l.dialFor(a)
	if err != nil {
		c.Close()
		l.deviceDown(index, err)
		end := EndUnreachable
		if l.ctx.Err() != nil {
			end = EndShutdown
		}
		job.done(end, err, Result{})
		return
	}
	job.target = target
	job.tls = sec.with(up)
	if d := l.raw.cfg.UserTimeout; d > 0 {
		if err := setDeviceOptions(up, d); err != nil {
			l.log.Debug().Err(err).Msg("raw: device socket options")
		}
	}
	job.started = time.Now()
	startPipe(l.ctx, c, up, PipeOptions{
		IdleTimeout: l.cfg.idleTimeout(),
		AtoB:        &l.stats.BytesIn,
		BtoA:        &l.stats.BytesOut,
		Pool:        l.pool,
		parker:      l.parker,
		parkAfter:   l.parkAfter,
		checkFirst:  l.firstCheck(a),
		live:        &l.live,
		proxy:       header,
	}, job.end, false)
}

// Holders returns, for each port of an exclusive raw listener whose device
// a client holds now, that client; nil for other listeners.
func (l *Listener) Holders() []Holder {
	if l.raw == nil {
		return nil
	}
	var out []Holder
	for _, q := range l.raw.queues {
		if q == nil {
			continue
		}
		// A queue shared with a successor (shareTurns) is listed by the
		// listener whose client holds it, so the status counts it once.
		if h, ok := q.current(l.raw); ok {
			out = append(out, h)
		}
	}
	return out
}

// rawJob collects what the job line says, and what its end releases.
type rawJob struct {
	l       *Listener
	client  netip.AddrPort
	index   int
	target  *upstream.Target // nil until dialled
	queued  time.Duration
	started time.Time // when the pipe started
	tls     secured
	queue   *turnQueue // exclusive: the queue whose turn the job holds
	turn    *ticket
}

// end is the pipe's end: the job line, then the turn and the slot.
func (j *rawJob) end(res Result) {
	j.done(res.End, res.Err, res)
}

// done writes the job line, passes the turn on (exclusive) and releases
// the connection's slot.
func (j *rawJob) done(end string, err error, res Result) {
	printing := time.Duration(0)
	if !j.started.IsZero() {
		printing = time.Since(j.started)
	}
	j.log(end, err, res, printing)
	if j.queue != nil {
		j.queue.release(j.turn)
	}
	j.l.connDone(j.client)
}

// log writes the job line, the one place every job ends, and counts one
// that never reached a printer in Stats.Unreachable; an upstream that
// refused our client certificate makes it a warning that says so.
func (j *rawJob) log(end string, err error, res Result, printing time.Duration) {
	if end == EndUnreachable {
		j.l.stats.Unreachable.Add(1)
	}
	ev, msg := j.l.log.Info(), "raw job done"
	if end == EndQueueTimeout {
		// The printer was up but busy past queue_timeout: this job is
		// lost, each for a reason of its own, so each says so (an
		// outage, by contrast, is one warning of the upstream Set).
		ev = j.l.log.Warn()
	}
	reason := j.tls.refusal(res)
	if reason != "" {
		ev, msg = j.l.upstreamRefused(j.target, reason, err), refusedMsg+": "+reason
	}
	// A job that never reached the printer (unreachable, timed out or
	// left in the queue) names the ones it was for, as a tcp client's
	// line names the upstreams tried.
	addr := joinAddrs(j.l.cfg.Upstreams[j.index])
	if j.target != nil {
		addr = j.target.String()
	}
	ev = ev.Str("listen", j.l.listens[j.index]).Str("client", j.client.String()).
		Str("upstream", addr).Int64("bytes_in", res.AtoB).Int64("bytes_out", res.BtoA).
		Dur("queued_ms", j.queued).Dur("printing_ms", printing).Str("end", end)
	if reason != "" {
		ev = ev.Str("reason", reason)
	}
	ev = j.tls.add(ev)
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Msg(msg)
}

// deviceDown closes every client waiting for a device that did not answer
// (err): they would only meet the same dead device one connect timeout
// after another. The outage itself is logged once by the upstream Set. A
// dial that failed only for want of the relay's own descriptors, buffers
// or ports says nothing of the device (upstream.LocalShortage): the jobs
// waiting keep their places, or a moment of local pressure would drop
// every queued print job.
func (l *Listener) deviceDown(index int, err error) {
	if l.ctx.Err() != nil || shortOfResources(err) {
		return
	}
	if q := l.raw.queues[index]; q != nil {
		q.failWaiting()
	}
}
