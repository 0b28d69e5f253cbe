package daemon

import (
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
)

// TestCountsReadEveryStat gives every counter and gauge of each data plane's
// Stats its own bit, builds the snapshot, and requires every bit to show up
// in it: a counter added to a Stats type and not to the snapshot (and so not
// to /metrics, /status.json and the page) fails here. Sums keep their bits,
// since no two fields share one.
func TestCountsReadEveryStat(t *testing.T) {
	// A raw listener with every part forward has: the exclusive queue and
	// TLS on both sides.
	everyPart := config.Listener{
		Mode:        config.ModeRaw,
		Raw:         config.Raw{Exclusive: true},
		TLS:         &certs.ServerFiles{},
		UpstreamTLS: &certs.ClientFiles{},
	}
	// An ftp listener's control Stats are forward's, without a raw queue;
	// forward hands each connection to ftppassive's handler and so dials
	// and copies nothing itself: ftppassive counts those. TLS is for tcp
	// and raw listeners only.
	ftpUnused := []string{
		"Control.QueueLength", "Control.QueuedTotal", "Control.QueueWaitNanos", "Control.QueueTimeouts",
		"Control.BytesIn", "Control.BytesOut", "Control.DialFailures", "Control.Unreachable",
		"Control.Handshakes.OK", "Control.Handshakes.Resumed",
		"Control.UpstreamHandshakes.OK", "Control.UpstreamHandshakes.Resumed",
	}
	cases := []struct {
		name  string
		stats any // pointer to a Stats struct
		read  func(*admin.Snapshot, any)
		skip  []string
	}{
		{"forward", new(forward.Stats), func(s *admin.Snapshot, st any) { forwardCounts(s, st.(*forward.Stats), everyPart) }, nil},
		{"ftppassive", &ftppassive.Stats{Control: new(forward.Stats)}, func(s *admin.Snapshot, st any) { ftpCounts(s, st.(*ftppassive.Stats)) }, ftpUnused},
		{"udpstream", new(udpstream.Stats), func(s *admin.Snapshot, st any) { udpCounts(s, st.(*udpstream.Stats)) }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bits := map[string]uint64{}
			next := 0
			setBits(t, reflect.ValueOf(tc.stats).Elem(), "", &next, bits)
			if len(bits) == 0 {
				t.Fatal("no counters found: setBits does not know the Stats fields' types")
			}
			var s admin.Snapshot
			tc.read(&s, tc.stats)
			seen := orNumbers(reflect.ValueOf(s))
			for path, bit := range bits {
				if seen&bit == 0 && !contains(tc.skip, path) {
					t.Errorf("%s.%s reaches no field of admin.Snapshot: add it there (and to /metrics), or remove it", tc.name, path)
				}
			}
		})
	}
}

// setBits stores a distinct power of two in every atomic counter and gauge
// reachable from v, recording each by field path. Pointers to structs are
// filled in place (allocated when nil).
func setBits(t *testing.T, v reflect.Value, prefix string, next *int, out map[string]uint64) {
	t.Helper()
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		path := prefix + sf.Name
		bit := func() uint64 {
			if *next >= 64 {
				t.Fatalf("more than 64 counters under %s", path)
			}
			b := uint64(1) << *next
			*next++
			out[path] = b
			return b
		}
		switch c := f.Addr().Interface().(type) {
		case *atomic.Uint64:
			c.Store(bit())
		case *atomic.Int64:
			c.Store(int64(bit()))
		default:
			switch {
			case f.Kind() == reflect.Struct:
				setBits(t, f, path+".", next, out)
			case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
				if f.IsNil() {
					f.Set(reflect.New(f.Type().Elem()))
				}
				setBits(t, f.Elem(), path+".", next, out)
			default:
				t.Fatalf("%s: a %s in a Stats struct; teach setBits about it", path, f.Type())
			}
		}
	}
}

// orNumbers ORs every integer reachable from v.
func orNumbers(v reflect.Value) uint64 {
	var acc uint64
	switch v.Kind() {
	case reflect.Uint64:
		acc |= v.Uint()
	case reflect.Int64:
		acc |= uint64(v.Int())
	case reflect.Pointer:
		if !v.IsNil() {
			acc |= orNumbers(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				acc |= orNumbers(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			acc |= orNumbers(v.Index(i))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			acc |= orNumbers(it.Value())
		}
	}
	return acc
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestACLDecisionsReadEveryCount: each count of an acl guard reaches the
// admin endpoint (relay_acl_* series).
func TestACLDecisionsReadEveryCount(t *testing.T) {
	var c acl.Counts
	v := reflect.ValueOf(&c).Elem()
	want := map[string]uint64{}
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Uint64 {
			f.SetUint(uint64(1) << i)
			want[v.Type().Field(i).Name] = uint64(1) << i
		}
	}
	seen := orNumbers(reflect.ValueOf(aclDecisions(c)))
	for name, bit := range want {
		if seen&bit == 0 {
			t.Errorf("acl.Counts.%s reaches no field of admin.ACLDecisions", name)
		}
	}
}

// TestFactsHealthChecks: health_checks says whether a health section probes
// the upstreams; without one their health is only what traffic taught.
func TestFactsHealthChecks(t *testing.T) {
	if facts(config.Listener{Name: "web"}).HealthChecks {
		t.Error("health_checks without a health section")
	}
	if !facts(config.Listener{Name: "web", Health: config.Health{Interval: time.Second}}).HealthChecks {
		t.Error("no health_checks with health.interval 1s")
	}
}
