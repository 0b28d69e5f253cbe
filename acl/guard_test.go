package acl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/internal/world"
)

// fakeClock is a hand-driven Set.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// logLines decodes a JSON log buffer.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestGuardDecidesAndLogsWithRule(t *testing.T) {
	var buf bytes.Buffer
	var s Set
	s.Store(mustParse(t, "host web 127.0.0.2/32 reject\nhost web 127.0.0.0/8 allow\n"))
	admit := s.Guard("web", ProtoTCP, zerolog.New(&buf))

	if !admit(netip.MustParseAddrPort("127.0.0.3:4000")) {
		t.Error("127.0.0.3 rejected")
	}
	if admit(netip.MustParseAddrPort("127.0.0.2:4000")) {
		t.Error("127.0.0.2 admitted")
	}
	if admit(netip.MustParseAddrPort("[2001:db8::1]:4000")) {
		t.Error("2001:db8::1 admitted")
	}
	lines := logLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2:\n%s", len(lines), buf.String())
	}
	want := []map[string]any{
		{"level": "info", "listener": "web", "proto": "tcp", "client": "127.0.0.2:4000",
			"rule": "t.conf:1", "line": "host web 127.0.0.2/32 reject", "message": "acl rejected client"},
		{"level": "info", "listener": "web", "proto": "tcp", "client": "[2001:db8::1]:4000",
			"rule": "no matching line", "message": "acl rejected client"},
	}
	for i := range want {
		for k, v := range want[i] {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, lines[i][k], v)
			}
		}
	}
	c := s.Counts()
	if len(c) != 1 || c[0] != (Counts{Listener: "web", Proto: ProtoTCP, Allowed: 1, Rejected: 2, Logged: 2}) {
		t.Errorf("Counts() = %+v", c)
	}
}

func TestGuardFollowsStore(t *testing.T) {
	var s Set
	admit := s.Guard("web", ProtoUDP, zerolog.Nop())
	client := netip.MustParseAddrPort("10.0.0.1:5")
	if !admit(client) {
		t.Error("no list stored: client rejected, want allow all")
	}
	s.Store(mustParse(t, "udp web 10.0.0.0/8 reject\n"))
	if admit(client) {
		t.Error("after Store: client admitted")
	}
	s.Store(nil)
	if !admit(client) {
		t.Error("after Store(nil): client rejected, want allow all")
	}
	// A second Guard for the same listener shares the counters.
	again := s.Guard("web", ProtoUDP, zerolog.Logger{})
	again(client)
	if c := s.Counts(); len(c) != 1 || c[0].Allowed != 3 || c[0].Rejected != 1 {
		t.Errorf("Counts() = %+v, want 3 allowed and 1 rejected on one guard", c)
	}
}

// A scan of 10 000 rejections logs at most LogBurst lines per interval plus
// one summary per interval, and the summaries add up exactly.
func TestGuardSamplesRejections(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	var buf bytes.Buffer
	s := Set{LogBurst: 5, LogInterval: time.Second, Now: clock.Now}
	s.Store(mustParse(t, "host all all reject\n"))
	admit := s.Guard("cms-http", ProtoTCP, zerolog.New(&buf))

	const total = 10_000
	for i := range total {
		if i > 0 && i%2500 == 0 {
			clock.Advance(time.Second) // four intervals of 2 500 each
		}
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), uint16(i))
		if admit(client) {
			t.Fatal("admitted under reject-all")
		}
	}
	s.Flush()
	s.Flush() // nothing left to summarize: no second line

	var individual, summaries int
	var suppressed float64
	for _, m := range logLines(t, &buf) {
		switch m["level"] {
		case "info":
			individual++
		case "warn":
			summaries++
			suppressed += m["suppressed"].(float64)
		}
	}
	if individual != 4*5 {
		t.Errorf("%d rejections logged one by one, want %d (5 per interval)", individual, 4*5)
	}
	if summaries != 4 {
		t.Errorf("%d summaries, want 4 (one per interval)", summaries)
	}
	if int(suppressed)+individual != total {
		t.Errorf("logged %d + suppressed %v = %v, want exactly %d", individual, suppressed, int(suppressed)+individual, total)
	}
	c := s.Counts()[0]
	if c.Rejected != total || c.Logged != uint64(individual) {
		t.Errorf("Counts() = %+v", c)
	}
}

// Concurrent guards stay exact under -race.
func TestGuardConcurrent(t *testing.T) {
	report := test.CheckRoutines(t)
	defer report()
	clock := &fakeClock{now: time.Unix(0, 0)}
	var buf world.LogBuffer
	s := Set{Now: clock.Now}
	s.Store(mustParse(t, "host all 10.0.0.0/8 allow\n"))
	admit := s.Guard("web", ProtoTCP, zerolog.New(&buf))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				admit(netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(10 + i%2), 0, 0, byte(w)}), 1))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 10 {
			s.Flush()
			clock.Advance(time.Second)
		}
	}()
	wg.Wait()
	s.Flush()
	c := s.Counts()[0]
	if c.Allowed != 1000 || c.Rejected != 1000 {
		t.Errorf("Counts() = %+v, want 1000 allowed, 1000 rejected", c)
	}
	var suppressed float64
	var individual int
	for _, m := range logLines(t, bytes.NewBufferString(buf.String())) {
		if m["level"] == "warn" {
			suppressed += m["suppressed"].(float64)
		} else {
			individual++
		}
	}
	if individual+int(suppressed) != 1000 || uint64(individual) != c.Logged {
		t.Errorf("logged %d + suppressed %v, want 1000 (Logged %d)", individual, suppressed, c.Logged)
	}
}

func TestGuardAllowDoesNotAllocate(t *testing.T) {
	var s Set
	s.Store(mustParse(t, "host all 10.0.0.0/8 allow\n"))
	admit := s.Guard("web", ProtoTCP, zerolog.Nop())
	client := netip.MustParseAddrPort("10.1.2.3:4567")
	if n := testing.AllocsPerRun(1000, func() { admit(client) }); n != 0 {
		t.Errorf("admit allocates %v times per call", n)
	}
}

// TestRefusalsShareTheBudget: refusals by a later check (per-source limits)
// are logged with their reason, counted apart from ACL rejections, and take
// lines from the same budget, so the summary covers both.
func TestRefusalsShareTheBudget(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{now: time.Unix(1000, 0)}
	s := Set{LogBurst: 3, Now: clk.Now}
	s.Store(mustParse(t, "host web 127.0.0.2/32 reject\nhost web all allow\n"))
	admit := s.Guard("web", ProtoTCP, zerolog.New(&buf))
	refuse := s.Refusals("web", ProtoTCP, zerolog.New(&buf))
	for range 2 {
		admit(netip.MustParseAddrPort("127.0.0.2:1"))
	}
	for range 3 {
		refuse(netip.MustParseAddrPort("127.0.0.3:2"), "per_source: too many")
	}
	s.Flush()
	lines := logLines(t, &buf)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 2 rejections + 1 refusal + 1 summary:\n%s", len(lines), buf.String())
	}
	if lines[2]["message"] != "client refused" || lines[2]["reason"] != "per_source: too many" ||
		lines[2]["client"] != "127.0.0.3:2" {
		t.Errorf("refusal line: %v", lines[2])
	}
	if lines[3]["suppressed"] != 2.0 || lines[3]["refused_total"] != 3.0 || lines[3]["rejected_total"] != 2.0 {
		t.Errorf("summary line: %v", lines[3])
	}
	c := s.Counts()
	if len(c) != 1 || c[0].Rejected != 2 || c[0].Refused != 3 || c[0].Logged != 3 {
		t.Errorf("Counts = %+v, want rejected 2, refused 3, logged 3", c)
	}
}

// TestKeepDropsGuards: Keep drops the guards it is told to, after logging
// the rejections they had suppressed; the ones kept count on, and asking
// for a dropped one again counts from zero.
func TestKeepDropsGuards(t *testing.T) {
	var buf bytes.Buffer
	s := Set{LogBurst: 1, Now: (&fakeClock{now: time.Unix(1_700_000_000, 0)}).Now}
	s.Store(mustParse(t, "host all all reject\n"))
	client := netip.MustParseAddrPort("203.0.113.7:40000")
	for _, name := range []string{"web", "box"} {
		admit := s.Guard(name, ProtoTCP, zerolog.New(&buf))
		for range 3 {
			admit(client)
		}
	}
	s.Keep(func(listener string, proto Proto) bool { return listener == "web" })
	if c := s.Counts(); len(c) != 1 || c[0].Listener != "web" || c[0].Rejected != 3 {
		t.Errorf("Counts() = %+v, want web alone with its 3 rejections", c)
	}
	var summary map[string]any
	for _, m := range logLines(t, &buf) {
		if m["level"] == "warn" {
			summary = m
		}
	}
	if summary == nil || summary["listener"] != "box" || summary["suppressed"] != float64(2) {
		t.Errorf("the dropped guard's summary: %v, want box's 2 suppressed", summary)
	}
	s.Guard("box", ProtoTCP, zerolog.Logger{})(client)
	if c := s.Counts(); len(c) != 2 || c[0].Listener != "box" || c[0].Rejected != 1 {
		t.Errorf("Counts() = %+v, want box anew with 1 rejection", c)
	}
}
