package admin

import (
	"bufio"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// distinct gives every integer leaf under v (struct fields, map values,
// through pointers) its own value, starting at *next, and records the value
// /metrics must show for it by field path. A time.Duration is set to whole
// seconds, since /metrics shows seconds. Floats (Rates) are admin's own
// derived values and are skipped.
func distinct(v reflect.Value, path string, next *int, want map[string]float64) {
	switch v.Kind() {
	case reflect.Uint64:
		*next++
		v.SetUint(uint64(*next))
		want[path] = float64(*next)
	case reflect.Int64:
		*next++
		if v.Type() == reflect.TypeFor[time.Duration]() {
			v.SetInt(int64(time.Duration(*next) * time.Second))
		} else {
			v.SetInt(int64(*next))
		}
		want[path] = float64(*next)
	case reflect.Pointer:
		if !v.IsNil() {
			distinct(v.Elem(), path, next, want)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			distinct(v.Field(i), path+"."+v.Type().Field(i).Name, next, want)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			*next++
			v.SetMapIndex(k, reflect.ValueOf(uint64(*next)))
			want[path+"["+k.String()+"]"] = float64(*next)
		}
	case reflect.Slice:
		for i := range v.Len() {
			distinct(v.Index(i), path+"["+strconv.Itoa(i)+"]", next, want)
		}
	}
}

// TestEveryCountReachesMetrics fills every counter and gauge of a Snapshot
// with all its sections, and of the ACL's decisions, with its own value and
// requires each value on some relay_* series: a field added to Snapshot
// without its series fails here. (/status.json is the Snapshot itself, so it
// cannot miss a field; TestPageShowsEveryField covers the page.)
func TestEveryCountReachesMetrics(t *testing.T) {
	s := Snapshot{
		Listener: "all-parts", Mode: "tcp", State: StateServing,
		Conns: &Conns{}, UDP: &UDP{Dropped: map[string]uint64{"acl": 0, "send_error": 0}},
		FTP: &FTP{}, Raw: &Raw{},
		TLS: &TLS{
			Client:   &Handshakes{Failed: map[string]uint64{"expired": 0}},
			Upstream: &Handshakes{Failed: map[string]uint64{"unknown_authority": 0}},
		},
	}
	relay := Relay{ACL: &ACL{Decisions: []ACLDecisions{{Listener: "all-parts", Proto: "tcp"}}}}
	want := map[string]float64{}
	next := 100
	distinct(reflect.ValueOf(&s).Elem(), "Snapshot", &next, want)
	distinct(reflect.ValueOf(&relay.ACL.Decisions).Elem(), "ACL.Decisions", &next, want)
	if len(want) < 30 {
		t.Fatalf("only %d fields filled; distinct misses a kind", len(want))
	}

	srv, err := New(Config{
		Gather: func() []Snapshot { return []Snapshot{s} },
		Relay:  func() Relay { return relay },
	})
	if err != nil {
		t.Fatal(err)
	}
	shown := map[float64]bool{}
	sc := bufio.NewScanner(strings.NewReader(httptestGet(t, srv.Handler(), "/metrics")))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "relay_") {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			shown[v] = true
		}
	}
	for path, v := range want {
		if !shown[v] {
			t.Errorf("%s (set to %v) is on no relay_* series of /metrics", path, v)
		}
	}
}
