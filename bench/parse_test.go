package main

import (
	"math"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (we) (ird name) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 5 0 0\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.pgrp != 4240 {
		t.Errorf("pgrp = %d, want 4240", st.pgrp)
	}
	if want := 310 * clockTick; st.cpu != want {
		t.Errorf("cpu = %v, want %v (utime+stime+cutime+cstime)", st.cpu, want)
	}
	for _, bad := range []string{"", "1 (x S 1", "1 (x) S 1 2"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestParseMachineTimes(t *testing.T) {
	m0, err := parseMachineTimes([]byte("cpu  100 5 50 800 20 1 4 0 30 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	// guest (30) is inside user already and is not counted twice.
	if m0.idle != 820 || m0.total != 980 {
		t.Errorf("idle %d total %d, want 820 of 980", m0.idle, m0.total)
	}
	m1 := machineTimes{idle: m0.idle + 25, total: m0.total + 100}
	if got := m1.idleSince(m0); got != 25 {
		t.Errorf("idleSince = %v, want 25", got)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 x 4 5 6\n"} {
		if _, err := parseMachineTimes([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestNetTableHas(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue
   0: 0100007F:3A98 00000000:0000 0A 00000000:00000000 00:00000000 00000000
   1: 0100007F:3A99 0100007F:9C40 01 00000000:00000000 00:00000000 00000000
`)
	cases := []struct {
		name   string
		port   string
		listen bool
		want   bool
	}{
		{"listening tcp", ":3A98", true, true},
		{"established is not listening", ":3A99", true, false},
		{"udp needs no state", ":3A99", false, true},
		{"absent", ":1F90", false, false},
	}
	for _, c := range cases {
		if got := netTableHas(table, c.port, c.listen); got != c.want {
			t.Errorf("%s: got %v", c.name, got)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{3, 1, 2, 10})
	if s.median != 2.5 || s.min != 1 || s.max != 10 || s.n != 4 {
		t.Errorf("summary = %+v", s)
	}
	if got := s.spread(); math.Abs(got-3.6) > 1e-9 {
		t.Errorf("spread = %v, want 3.6", got)
	}
	if s := summarize(nil); !math.IsNaN(s.median) || s.n != 0 {
		t.Errorf("empty summary = %+v", s)
	}
}

func TestAdvantage(t *testing.T) {
	// Above 1 means the relay is ahead, for either direction of metric.
	if got := advantage(metric{higher: true}, 10, 5); got != 2 {
		t.Errorf("higher-is-better advantage = %v, want 2", got)
	}
	if got := advantage(metric{}, 10, 5); got != 0.5 {
		t.Errorf("lower-is-better advantage = %v, want 0.5", got)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, c := range []struct {
		v      float64
		digits int
		want   string
	}{
		{1234567.891, 1, "1 234 567.9"},
		{999, 0, "999"},
		{-12345, 0, "-12 345"},
		{0.1234, 3, "0.123"},
		{math.NaN(), 2, "–"},
	} {
		if got := formatValue(c.v, c.digits); got != c.want {
			t.Errorf("formatValue(%v, %d) = %q, want %q", c.v, c.digits, got, c.want)
		}
	}
}

func TestPickScenarios(t *testing.T) {
	got, err := pickScenarios("raw, tcp")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].name() != "tcp" || got[1].name() != "raw" {
		t.Errorf("picked %v, want tcp then raw (table order)", got)
	}
	if _, err := pickScenarios("tcp,nope"); err == nil {
		t.Error("unknown scenario accepted")
	}
}
