package upstream

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/rs/zerolog"
)

func newSet(t *testing.T, cfg Config) (*Set, *world.LogBuffer) {
	t.Helper()
	logs := &world.LogBuffer{}
	cfg.Listener = "test"
	cfg.Log = zerolog.New(logs)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

// connect walks port index's list as a data plane does and returns the
// address that answered, or "" and the cursor's error. A connect to an
// address of badTLS then fails its handshake, as with upstream_tls.
func connect(s *Set, index int, badTLS ...string) (string, error) {
	c := s.Begin(index)
	for t := c.Next(); t != nil; t = c.Next() {
		conn, err := net.DialTimeout("tcp", t.String(), time.Second)
		if err == nil && slices.Contains(badTLS, t.String()) {
			// A data plane that originates TLS: connected, then the
			// handshake fails (an error that is not the dial's).
			conn.Close()
			err = errors.New("tls with " + t.String() + " (unknown_authority): certificate signed by unknown authority")
		}
		if err == nil {
			conn.Close()
			c.Worked()
			return t.String(), nil
		}
		c.Failed(err)
	}
	if err := c.Err(); err != nil {
		return "", err
	}
	return "", errors.New("every dial failed")
}

func status(s *Set, spec string) Status {
	for _, st := range s.Snapshot() {
		if st.Upstream == spec {
			return st
		}
	}
	return Status{Upstream: "missing " + spec}
}

// TestRefusedPrimary: a refused primary is marked down by the first dial,
// skipped by the next connections, re-tried in the background and used
// again once it answers.
func TestRefusedPrimary(t *testing.T) {
	checkLeaks(t)
	primary := world.DeadAddr(t)
	backup := world.NewBackend(t, world.Echo)
	s, logs := newSet(t, Config{Lists: [][]string{{primary, backup.Addr()}}, Timeout: time.Second})
	for i := range 5 {
		got, err := connect(s, 0)
		if err != nil || got != backup.Addr() {
			t.Fatalf("connection %d: %q %v, want the backup", i, got, err)
		}
	}
	if n := strings.Count(logs.String(), `"message":"upstream down"`); n != 1 {
		t.Errorf("%d down lines, want 1:\n%s", n, logs)
	}
	if st := status(s, primary); st.Up || st.Failovers != 5 {
		t.Errorf("primary %+v, want down with 5 failovers", st)
	}
	revive(t, primary)
	world.Eventually(t, "the primary back up", func() bool { return status(s, primary).Up })
	if got, err := connect(s, 0); err != nil || got != primary {
		t.Errorf("after recovery: %q %v, want the primary", got, err)
	}
	if !strings.Contains(logs.String(), `"reason":"a probe answered","down_for_ms":`) {
		t.Errorf("no up line with reason and down_for:\n%s", logs)
	}
}

// TestLocalShortageLeavesUp: a dial that failed for want of this host's
// descriptors, buffers or ports leaves the address up and logs no outage;
// a refusal still marks it down.
func TestLocalShortageLeavesUp(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	s, logs := newSet(t, Config{Lists: [][]string{{backend.Addr()}}})
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL, syscall.ENOSPC} {
		c := s.Begin(0)
		if c.Next() == nil {
			t.Fatalf("after %v: nothing up to try", errno)
		}
		c.Failed(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)})
		if st := status(s, backend.Addr()); !st.Up {
			t.Errorf("%v marked the upstream down", errno)
		}
	}
	if strings.Contains(logs.String(), "upstream down") {
		t.Errorf("a local shortage logged an outage:\n%s", logs)
	}
	c := s.Begin(0)
	c.Next()
	c.Failed(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	if st := status(s, backend.Addr()); st.Up {
		t.Errorf("a refusal left the upstream up")
	}
}

// TestShortageIsNoOutage: a connection whose every dial failed for want of
// this host's own descriptors finds the list exhausted, but nothing is
// down: no "every upstream down" warning, and a real outage later is still
// logged once.
func TestShortageIsNoOutage(t *testing.T) {
	checkLeaks(t)
	a, b := world.NewBackend(t, world.Echo), world.NewBackend(t, world.Echo)
	s, logs := newSet(t, Config{Lists: [][]string{{a.Addr(), b.Addr()}}})
	c := s.Begin(0)
	for tg := c.Next(); tg != nil; tg = c.Next() {
		c.Failed(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)})
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err = %v, want nil: every address was up and tried", err)
	}
	if strings.Contains(logs.String(), "every upstream down") {
		t.Errorf("a local shortage logged an outage:\n%s", logs)
	}
	c = s.Begin(0)
	for tg := c.Next(); tg != nil; tg = c.Next() {
		c.Failed(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	}
	if n := strings.Count(logs.String(), "every upstream down"); n != 1 {
		t.Errorf("%d outage lines after both refused, want 1:\n%s", n, logs)
	}
}

// TestAllDown: with every upstream down, a connection gets ErrAllDown at
// once, and the outage is logged once however many clients meet it.
func TestAllDown(t *testing.T) {
	checkLeaks(t)
	a, b := world.DeadAddr(t), world.DeadAddr(t)
	s, logs := newSet(t, Config{Lists: [][]string{{a, b}}})
	if _, err := connect(s, 0); err == nil || errors.Is(err, ErrAllDown) {
		t.Fatalf("first connection: %v, want its dials' failure", err)
	}
	for range 10 {
		start := time.Now()
		if _, err := connect(s, 0); !errors.Is(err, ErrAllDown) {
			t.Fatalf("err %v, want ErrAllDown", err)
		}
		if took := time.Since(start); took > 10*time.Millisecond {
			t.Errorf("an all-down answer took %v", took)
		}
	}
	if n := strings.Count(logs.String(), "every upstream down"); n != 1 {
		t.Errorf("%d outage lines, want 1:\n%s", n, logs)
	}
}

// TestActiveChecks: with health checks on, a dead upstream is known down
// before any client meets it, and a live one stays up.
func TestActiveChecks(t *testing.T) {
	checkLeaks(t)
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			var dead, live string
			if network == "tcp" {
				dead, live = world.DeadAddr(t), world.NewBackend(t, world.Echo).Addr()
			} else {
				dead, live = deadUDP(t), liveUDP(t)
			}
			s, logs := newSet(t, Config{Network: network, Lists: [][]string{{dead, live}},
				Health: Health{Interval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond}})
			s.Start()
			world.Eventually(t, "the dead upstream down", func() bool { return !status(s, dead).Up })
			time.Sleep(150 * time.Millisecond) // a few more rounds, each longer than the probe timeout
			if !status(s, live).Up {
				t.Errorf("the live upstream was marked down:\n%s", logs)
			}
			c := s.Begin(0)
			if got := c.Next(); got == nil || got.String() != live {
				t.Errorf("Next = %v, want the live upstream first", got)
			}
			if !strings.Contains(logs.String(), "health check") {
				t.Errorf("the down line does not say a health check found it:\n%s", logs)
			}
		})
	}
}

func deadUDP(t *testing.T) string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// liveUDP is a UDP socket that receives and never answers: a probe must
// read its silence as up.
func liveUDP(t *testing.T) string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

// TestNamedUpstream: every address of a name is tried in the answer's
// order; a name that is up on one address counts as up.
func TestNamedUpstream(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	_, port, _ := net.SplitHostPort(backend.Addr())
	dns := world.NewDNSServer(t)
	dns.Set("cms.test", world.Zone{Addrs: addrs("127.0.0.2", "127.0.0.1"), TTL: 60})
	r, _ := newResolver(t, dns.Addr())
	spec := "cms.test:" + port
	s, logs := newSet(t, Config{Lists: [][]string{{spec}}, Resolver: r})
	if got, err := connect(s, 0); err != nil || got != "127.0.0.1:"+port {
		t.Fatalf("%q %v, want the second address", got, err)
	}
	if got, err := connect(s, 0); err != nil || got != "127.0.0.1:"+port {
		t.Fatalf("%q %v, want the second address", got, err)
	}
	if !strings.Contains(logs.String(), `"address":"127.0.0.2:`+port+`"`) {
		t.Errorf("the down line does not name the address:\n%s", logs)
	}
	if st := status(s, spec); !st.Up || st.Failovers != 0 {
		t.Errorf("status %+v, want up without failovers", st)
	}
}

// TestUnresolvedNameIsDown: a name that never resolved has no address; its
// port is all down and the next entry serves.
func TestUnresolvedNameIsDown(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	dns := world.NewDNSServer(t)
	r, _ := newResolver(t, dns.Addr())
	spec := "gone.test:" + strconv.Itoa(80)
	s, _ := newSet(t, Config{Lists: [][]string{{spec, backend.Addr()}}, Resolver: r})
	if got, err := connect(s, 0); err != nil || got != backend.Addr() {
		t.Fatalf("%q %v, want the backup", got, err)
	}
	if st := status(s, spec); st.Up || st.Failovers != 1 {
		t.Errorf("status %+v, want down with 1 failover", st)
	}
}

// TestReplacesKeepsOutage: a Set that replaces another (a reload) starts
// with the addresses its predecessor knows to be down down, in the same
// outage: no dial and no second "upstream down" line for them, the
// connection goes to the backup; its own re-try brings the address back
// once it answers. A Set of another network keeps nothing.
func TestReplacesKeepsOutage(t *testing.T) {
	checkLeaks(t)
	primary := world.DeadAddr(t)
	backup := world.NewBackend(t, world.Echo)
	lists := [][]string{{primary, backup.Addr()}}
	old, _ := newSet(t, Config{Lists: lists, Timeout: time.Second})
	if got, err := connect(old, 0); err != nil || got != backup.Addr() {
		t.Fatalf("before: %q %v, want the backup", got, err)
	}
	s, logs := newSet(t, Config{Lists: lists, Timeout: time.Second, Replaces: old})
	s.Start()
	if st := status(s, primary); st.Up {
		t.Fatalf("the successor starts with the primary up")
	}
	if got, err := connect(s, 0); err != nil || got != backup.Addr() {
		t.Fatalf("after: %q %v, want the backup", got, err)
	}
	if st := status(s, primary); st.Failovers != 1 {
		t.Errorf("primary %+v, want 1 failover", st)
	}
	if strings.Contains(logs.String(), "upstream down") {
		t.Errorf("the outage was logged again:\n%s", logs)
	}
	udp, _ := newSet(t, Config{Network: "udp", Lists: lists, Replaces: old})
	if st := status(udp, primary); !st.Up {
		t.Errorf("a udp Set took over a tcp outage")
	}
	// With every upstream of the port down, the port's outage goes on too.
	dead := [][]string{{primary, world.DeadAddr(t)}}
	oldDead, _ := newSet(t, Config{Lists: dead, Timeout: time.Second})
	if _, err := connect(oldDead, 0); err == nil {
		t.Fatal("a dead list answered")
	}
	newDead, deadLogs := newSet(t, Config{Lists: dead, Timeout: time.Second, Replaces: oldDead})
	if _, err := connect(newDead, 0); !errors.Is(err, ErrAllDown) {
		t.Errorf("successor of a dead list: %v, want ErrAllDown at once", err)
	}
	if deadLogs.String() != "" {
		t.Errorf("the successor logged the outage again:\n%s", deadLogs)
	}

	revive(t, primary)
	world.Eventually(t, "the primary back up", func() bool { return status(s, primary).Up })
	logs.Wait(t, `"message":"upstream up"`, `"reason":"a probe answered"`)
}

// revive brings a dead address back: a listener there accepts and closes
// every connection until the test ends. The test is skipped if the port
// was taken meanwhile.
func revive(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port of %s was taken meanwhile: %v", addr, err)
	}
	back := make(chan struct{})
	go func() {
		defer close(back)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-back })
}

// TestRetireQuiets: a retired Set (its listener replaced) ends its active
// checks, and an address its remaining dials find down is marked down
// without a line: the successor's Set reports the upstreams.
func TestRetireQuiets(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	s, logs := newSet(t, Config{Lists: [][]string{{backend.Addr()}}, Health: Health{Interval: 20 * time.Millisecond}})
	s.Start()
	s.Retire()
	world.Eventually(t, "the active checks to end", func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "upstream.(*Set).checkLoop")
	})
	c := s.Begin(0)
	if c.Next() == nil {
		t.Fatal("nothing up to try")
	}
	c.Failed(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	if st := status(s, backend.Addr()); st.Up {
		t.Error("a failed dial left the address up")
	}
	if logs.String() != "" {
		t.Errorf("a retired Set logged:\n%s", logs)
	}
}

// TestNameForgetsOldAddresses: a name whose address changes 100 times (a
// dynamic address, a rotating pool), each address refused and so down
// with its re-try running, leaves the Set with the targets of its latest
// answer only. Before, it kept a Target for every address the name ever
// had, and the re-try of each went on probing it.
func TestNameForgetsOldAddresses(t *testing.T) {
	checkLeaks(t)
	_, port, _ := net.SplitHostPort(world.DeadAddr(t))
	dns := world.NewDNSServer(t)
	r, _ := newResolver(t, dns.Addr())
	s, _ := newSet(t, Config{Lists: [][]string{{"pool.test:" + port}}, Resolver: r, Timeout: time.Second})
	e := s.entries[0]
	for i := range 100 {
		want := netip.AddrFrom4([4]byte{127, 5, 0, byte(i + 1)})
		dns.Set("pool.test", world.Zone{Addrs: []netip.Addr{want}, TTL: 5})
		r.skew.Add(int64(MinTTL + time.Second))
		world.Eventually(t, "the name's new address", func() bool {
			ts := s.current(e)
			return len(ts) == 1 && ts[0].addr.Addr() == want
		})
		if _, err := connect(s, 0); err == nil {
			t.Fatalf("%s:%s answered, want refused", want, port)
		}
	}
	s.mu.Lock()
	n := len(s.targets)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d targets after the name's address changed 100 times, want 1 (its latest)", n)
	}
	if st := status(s, "pool.test:"+port); st.Up {
		t.Errorf("status %+v, want down: its one address refuses", st)
	}
}
