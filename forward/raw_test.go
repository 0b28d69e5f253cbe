package forward

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"golang.org/x/sys/unix"
)

const (
	enq = 0x05 // status request
	ack = 0x06 // status answer
)

// printer simulates a ticket printer: one job per connection, read to EOF;
// every ENQ byte is answered at once with an ACK; after EOF it writes
// "done" and closes. It records the most connections it had at once and
// every job's bytes.
type printer struct {
	*world.Backend
	startDelay time.Duration // pause before reading a job, so others queue
	stall      chan struct{} // non-nil: stop reading after the first chunk until closed

	active, maxActive atomic.Int32

	mu   sync.Mutex // guards jobs
	jobs [][]byte
}

func newPrinter(t *testing.T, p *printer) *printer {
	p.Backend = world.NewBackend(t, p.serve)
	if p.stall != nil {
		// Registered after the backend's cleanup, so it runs first and
		// lets the stalled handler return.
		t.Cleanup(func() { close(p.stall) })
	}
	return p
}

func (p *printer) serve(c net.Conn) {
	n := p.active.Add(1)
	for {
		m := p.maxActive.Load()
		if n <= m || p.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	defer p.active.Add(-1)
	if p.startDelay > 0 {
		time.Sleep(p.startDelay)
	}
	var job bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		k, err := c.Read(buf)
		if k > 0 {
			job.Write(buf[:k])
			if acks := bytes.Count(buf[:k], []byte{enq}); acks > 0 {
				c.Write(bytes.Repeat([]byte{ack}, acks))
			}
			if p.stall != nil {
				<-p.stall
				return
			}
		}
		if err != nil {
			break
		}
	}
	p.mu.Lock()
	p.jobs = append(p.jobs, job.Bytes())
	p.mu.Unlock()
	io.WriteString(c, "done")
}

// markedJob is client i's print job: marked at both ends, one ENQ inside.
func markedJob(i, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "BEGIN %d\n", i)
	for line := 0; b.Len() < size; line++ {
		fmt.Fprintf(&b, "job %d line %d ........................................\n", i, line)
	}
	b.WriteByte(enq)
	fmt.Fprintf(&b, "END %d\n", i)
	return b.Bytes()
}

func rawRelay(t *testing.T, up string, raw Raw) *relay {
	return startRelay(t, Config{Name: "printer", Upstreams: [][]string{{up}}, Raw: &raw})
}

// TestRawExclusiveSixJobs: six clients send large marked jobs at once; the
// printer sees one connection at a time and six whole, unmixed jobs.
func TestRawExclusiveSixJobs(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{startDelay: 100 * time.Millisecond})
	r := rawRelay(t, p.Addr(), Raw{Exclusive: true})
	const clients, size = 6, 1 << 20
	replies := make(chan string, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", r.addr(0))
			if err != nil {
				replies <- err.Error()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			c.Write(markedJob(i, size))
			c.(*net.TCPConn).CloseWrite()
			reply, _ := io.ReadAll(c)
			replies <- string(reply)
		}()
	}
	wg.Wait()
	close(replies)
	for reply := range replies {
		if reply != "\x06done" {
			t.Errorf("client got %q, want ACK and done", reply)
		}
	}
	if m := p.maxActive.Load(); m != 1 {
		t.Errorf("printer saw %d connections at once", m)
	}
	want := map[[32]byte]int{}
	for i := range clients {
		want[sha256.Sum256(markedJob(i, size))] = i
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.jobs) != clients {
		t.Fatalf("printer got %d jobs, want %d", len(p.jobs), clients)
	}
	for _, job := range p.jobs {
		if _, ok := want[sha256.Sum256(job)]; !ok {
			t.Errorf("job of %d bytes starting %q is not one client's whole job", len(job), job[:min(len(job), 12)])
		}
		delete(want, sha256.Sum256(job))
	}
	if s := r.Stats(); s.QueuedTotal.Load() == 0 || s.QueueLength.Load() != 0 {
		t.Errorf("QueuedTotal %d QueueLength %d", s.QueuedTotal.Load(), s.QueueLength.Load())
	}
	line := r.logs.Wait(t, `"end":"eof"`, fmt.Sprintf(`"bytes_in":%d`, len(markedJob(0, size))))
	world.CheckFields(t, line, append(accessKeys, "queued_ms", "printing_ms")...)
}

// holdPrinter connects a client that takes the printer and keeps it.
func holdPrinter(t *testing.T, r *relay, p *printer) *net.TCPConn {
	t.Helper()
	c := r.dial(t, 0)
	world.Eventually(t, "printer taken", func() bool { return p.active.Load() == 1 })
	return c
}

func TestRawQueueTimeout(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{})
	const timeout = 300 * time.Millisecond
	r := rawRelay(t, p.Addr(), Raw{Exclusive: true, QueueTimeout: timeout})
	holdPrinter(t, r, p)
	waiting := r.dial(t, 0)
	io.WriteString(waiting, "job bytes sent while waiting")
	took := expectClosed(t, waiting, 5*time.Second)
	if took < timeout-50*time.Millisecond {
		t.Errorf("closed after %v, queue timeout is %v", took, timeout)
	}
	// The job never reached the printer: a failed job's line is a
	// warning, as the README's Logs section says.
	r.logs.Wait(t, `"end":"queue_timeout"`, `"bytes_in":0`, `"level":"warn"`)
	if n := r.Stats().QueueTimeouts.Load(); n != 1 {
		t.Errorf("QueueTimeouts = %d", n)
	}
	if n := p.Accepted(); n != 1 {
		t.Errorf("printer accepted %d connections, want 1", n)
	}
}

// TestRawLeaveQueue: a waiting client that hangs up is out of the queue at
// once; the next client gets the printer after the first, and the printer
// never sees the one that left.
func TestRawLeaveQueue(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{})
	r := rawRelay(t, p.Addr(), Raw{Exclusive: true, QueueTimeout: time.Minute})
	holder := holdPrinter(t, r, p)
	leaver := r.dial(t, 0)
	world.Eventually(t, "queued", func() bool { return r.Stats().QueueLength.Load() == 1 })
	start := time.Now()
	leaver.Close()
	r.logs.Wait(t, `"end":"left_queue"`)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("left the queue after %v", took)
	}
	if n := r.Stats().QueueLength.Load(); n != 0 {
		t.Errorf("QueueLength = %d after the client left", n)
	}
	next := r.dial(t, 0)
	io.WriteString(next, "next job")
	next.CloseWrite()
	world.Eventually(t, "next queued", func() bool { return r.Stats().QueueLength.Load() == 1 })
	holder.CloseWrite()
	holder.SetDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(holder)
	next.SetDeadline(time.Now().Add(5 * time.Second))
	if reply, err := io.ReadAll(next); err != nil || string(reply) != "done" {
		t.Errorf("next client got %q, %v", reply, err)
	}
	if n := p.Accepted(); n != 2 {
		t.Errorf("printer accepted %d connections, want 2 (holder, next)", n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.jobs) != 2 || string(p.jobs[1]) != "next job" {
		t.Errorf("jobs %q", p.jobs)
	}
}

// TestRawPrinterStopsAnswering: the printer stops reading mid-job, its
// window closes, and TCP_USER_TIMEOUT on the relay's side ends the job; the
// client is closed.
func TestRawPrinterStopsAnswering(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{stall: make(chan struct{})})
	const userTimeout = 500 * time.Millisecond
	r := rawRelay(t, p.Addr(), Raw{UserTimeout: userTimeout})
	c := r.dial(t, 0)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		chunk := bytes.Repeat([]byte("ticket "), 8<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	io.Copy(io.Discard, c)
	took := time.Since(start)
	<-writing
	if took < userTimeout || took > 20*time.Second {
		t.Errorf("client closed after %v, user timeout %v", took, userTimeout)
	}
	r.logs.Wait(t, `"end":"timeout"`, "timed out")
}

// TestRawStatusRoundTrips: one-byte status requests are answered one by
// one through the relay (no batching holds a byte back).
func TestRawStatusRoundTrips(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{})
	r := rawRelay(t, p.Addr(), Raw{})
	c := r.dial(t, 0)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	one := []byte{enq}
	for i := range 200 {
		if _, err := c.Write(one); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil || one[0] != ack {
			t.Fatalf("round trip %d: %q, %v", i, one, err)
		}
		one[0] = enq
	}
	c.CloseWrite()
	if rest, _ := io.ReadAll(c); string(rest) != "done" {
		t.Errorf("after EOF got %q", rest)
	}
	r.logs.Wait(t, `"end":"eof"`, `"bytes_in":200`, `"bytes_out":204`)
}

// TestRawDeviceSocketOptions checks what the relay sets on the printer side.
func TestRawDeviceSocketOptions(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{})
	dialed := make(chan net.Conn, 1)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			dialed <- c
		}
		return c, err
	}
	r := startRelay(t, Config{Upstreams: [][]string{{p.Addr()}}, Dial: dial,
		Raw: &Raw{UserTimeout: 1500 * time.Millisecond}})
	c := r.dial(t, 0)
	roundTrip(t, c, "\x05")
	wantSockopts(t, <-dialed, "",
		sockopt{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 1500},
		sockopt{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		sockopt{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1},
		sockopt{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1})
}

// TestRawOutage: a dead printer costs one warning per outage, the clients
// waiting behind the one that found it dead are closed at once, and so are
// later ones until a background re-try finds it back.
func TestRawOutage(t *testing.T) {
	checkLeaks(t)
	const connectTimeout = 400 * time.Millisecond
	var blackhole atomic.Bool
	blackhole.Store(true)
	p := newPrinter(t, &printer{})
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if blackhole.Load() {
			<-ctx.Done() // a powered-off printer: no answer at all
			return nil, fmt.Errorf("dial %s: %w", addr, ctx.Err())
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	r := startRelay(t, Config{Name: "printer", Upstreams: [][]string{{p.Addr()}}, Dial: dial,
		ConnectTimeout: connectTimeout, Raw: &Raw{Exclusive: true}})
	first := r.dial(t, 0)
	world.Eventually(t, "first dialing", func() bool { return r.Stats().Active.Load() == 1 })
	second, third := r.dial(t, 0), r.dial(t, 0)
	world.Eventually(t, "two queued", func() bool { return r.Stats().QueueLength.Load() == 2 })
	start := time.Now()
	for _, c := range []net.Conn{first, second, third} {
		expectClosed(t, c, 3*time.Second)
	}
	if took := time.Since(start); took > connectTimeout+time.Second {
		t.Errorf("clients closed after %v: one connect timeout each?", took)
	}
	fourth := r.dial(t, 0)
	expectClosed(t, fourth, 3*time.Second)
	r.logs.WaitCount(t, 4, `"end":"upstream_unreachable"`)
	// Each job's line names the printer it could not reach, as a tcp
	// client's names the upstreams tried: never "upstream":"".
	if n := r.logs.Count(`"upstream":"` + p.Addr() + `","bytes_in"`); n != 4 {
		t.Errorf("%d job lines name the printer %s, want 4:\n%s", n, p.Addr(), r.logs.String())
	}
	if n := r.logs.Count(`"level":"warn"`); n != 1 {
		t.Errorf("%d warnings for one outage:\n%s", n, r.logs.String())
	}
	if n := r.Stats().Unreachable.Load(); n != 4 {
		t.Errorf("Unreachable = %d, want the 4 jobs that never reached the printer", n)
	}
	blackhole.Store(false)
	r.logs.Wait(t, `"message":"upstream up"`, `"down_for_ms"`) // the background re-try, after 1 s
	c := r.dial(t, 0)
	if got := roundTrip(t, c, "\x05"); got != "\x06" {
		t.Errorf("status after the outage: %q", got)
	}
}

// TestRawHolders: Holders names the client that has the printer, from when
// its turn came, and nobody once it is done.
func TestRawHolders(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{})
	r := rawRelay(t, p.Addr(), Raw{Exclusive: true})
	if h := r.Holders(); len(h) != 0 {
		t.Fatalf("Holders before any client = %v", h)
	}
	before := time.Now()
	holder := holdPrinter(t, r, p)
	var h []Holder
	world.Eventually(t, "holder shown", func() bool { h = r.Holders(); return len(h) == 1 })
	if want := holder.LocalAddr().(*net.TCPAddr).AddrPort(); h[0].Client.Port() != want.Port() || h[0].Since.Before(before) {
		t.Errorf("Holders = %+v, want client %v since after %v", h, want, before)
	}
	holder.CloseWrite()
	holder.SetDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(holder)
	world.Eventually(t, "holder gone", func() bool { return len(r.Holders()) == 0 })
	if h := startRelay(t, Config{Name: "plain", Upstreams: [][]string{{p.Addr()}}}).Holders(); h != nil {
		t.Errorf("a tcp listener's Holders = %v, want nil", h)
	}
}
