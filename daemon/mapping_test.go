package daemon

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
)

// mapped is the data plane Config that open builds for l, before wiring.
func mapped(l config.Listener) any {
	switch l.Mode {
	case config.ModeTCP, config.ModeRaw:
		return forwardConfig(l)
	case config.ModeFTP:
		return ftpConfig(l)
	case config.ModeUDP:
		return udpConfig(l)
	}
	panic("unknown mode " + l.Mode)
}

// mappedAll is everything open builds for l before wiring: the data
// plane's Config and the upstream Set's.
func mappedAll(l config.Listener) []any {
	return []any{mapped(l), upstreamConfig(l)}
}

// notMapped lists, per mode, the fields of config.Listener that are
// deliberately not handed to the data plane. Anything else must change the
// mapped Config when it changes.
var notMapped = map[config.Mode][]string{
	config.ModeTCP: {"FTP.", "UDP.", "Raw."},
	config.ModeRaw: {"FTP.", "UDP."},
	config.ModeFTP: {"UDP.", "Raw.", "ProxyProtocol", "AcceptProxy", "ProxyHeaderTimeout"}, // ftp refuses PROXY headers
	config.ModeUDP: {"FTP.", "Raw.", "ConnectTimeout", "IdleTimeout", "MaxConns", "PerSource.",
		"ProxyProtocol", "AcceptProxy", "ProxyHeaderTimeout"},
}

// Every mode's own (and shared) settings are for printing or choose the
// mode. TLS and UpstreamTLS name files, which open reads into holders
// (daemon/tls.go) and a reload reads again; TestTLS* cover them.
var neverMapped = []string{"Mode", "ListenSpec", "UpstreamSpec", "TLS", "UpstreamTLS"}

// TestEveryListenerFieldReachesItsDataPlane changes one field of a listener
// at a time and fails when the mapped Config stays the same: a field added
// to config.Listener (a new YAML key) must be mapped, or listed in
// notMapped with a reason.
func TestEveryListenerFieldReachesItsDataPlane(t *testing.T) {
	leaves := listenerLeaves(reflect.TypeFor[config.Listener](), "", nil)
	for mode := range notMapped {
		t.Run(string(mode), func(t *testing.T) {
			var base config.Listener
			bv := reflect.ValueOf(&base).Elem()
			for i, leaf := range leaves {
				setLeaf(t, bv.FieldByIndex(leaf.index), i+1, leaf.path)
			}
			base.Mode = mode
			want := mappedAll(base)
			for i, leaf := range leaves {
				if skipped(mode, leaf.path) {
					continue
				}
				changed := base
				cv := reflect.ValueOf(&changed).Elem()
				// Fresh values: the slices of base must not be shared.
				setLeaf(t, cv.FieldByIndex(leaf.index), i+1000, leaf.path)
				if reflect.DeepEqual(mappedAll(changed), want) {
					t.Errorf("config.Listener.%s does not reach the %s data plane: map it in daemon/mapping.go, or list it in notMapped", leaf.path, mode)
				}
			}
		})
	}
}

func skipped(mode config.Mode, path string) bool {
	for _, p := range append(notMapped[mode], neverMapped...) {
		if path == p || strings.HasSuffix(p, ".") && strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

type leaf struct {
	path  string
	index []int
}

// listenerLeaves lists the settable values of t: fields of nested plain
// structs are followed, anything else (slices, arrays, netip.Addr) is one
// value.
func listenerLeaves(t reflect.Type, prefix string, index []int) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() {
			out = append(out, listenerLeaves(f.Type, prefix+f.Name+".", idx)...)
			continue
		}
		out = append(out, leaf{path: prefix + f.Name, index: idx})
	}
	return out
}

// setLeaf gives v a non-zero value derived from n, different for each n.
func setLeaf(t *testing.T, v reflect.Value, n int, path string) {
	t.Helper()
	switch v.Type() {
	case reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{192, 0, byte(n >> 8), byte(n)})))
		return
	case reflect.TypeFor[[]string]():
		v.Set(reflect.ValueOf([]string{fmt.Sprintf("127.0.0.1:%d", n)}))
		return
	case reflect.TypeFor[[][]string]():
		v.Set(reflect.ValueOf([][]string{{fmt.Sprintf("127.0.0.2:%d", n)}}))
		return
	case reflect.TypeFor[[]netip.Prefix]():
		v.Set(reflect.ValueOf([]netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, byte(n >> 8), byte(n)}), 32)}))
		return
	case reflect.TypeFor[[2]uint16]():
		v.Set(reflect.ValueOf([2]uint16{uint16(n), uint16(n + 1)}))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	case reflect.String:
		v.SetString(fmt.Sprint("v", n))
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(n))
	case reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		v.SetUint(uint64(n))
	case reflect.Float64:
		v.SetFloat(float64(n))
	case reflect.Bool:
		v.SetBool(n < 1000) // base true, changed false
	default:
		t.Fatalf("config.Listener.%s has type %s, which setLeaf cannot set yet: teach it", path, v.Type())
	}
}

func TestMapping(t *testing.T) {
	listen := []string{"127.0.0.1:2100", "127.0.0.1:2101"}
	ups := [][]string{{"127.0.0.9:21"}, {"127.0.0.9:21"}}
	shared := config.Listener{Name: "x", Listen: listen, Upstreams: ups,
		ConnectTimeout: 3 * time.Second, IdleTimeout: time.Minute, MaxConns: 7}
	tests := []struct {
		name string
		in   func(l *config.Listener)
		want any
	}{
		{"tcp", func(l *config.Listener) { l.Mode = config.ModeTCP },
			forward.Config{Name: "x", Listen: listen, Upstreams: ups,
				ConnectTimeout: 3 * time.Second, IdleTimeout: time.Minute, MaxConns: 7}},
		{"raw", func(l *config.Listener) {
			l.Mode = config.ModeRaw
			l.Raw = config.Raw{Exclusive: true, QueueTimeout: 9 * time.Second, UserTimeout: 2 * time.Second}
		}, forward.Config{Name: "x", Listen: listen, Upstreams: ups,
			ConnectTimeout: 3 * time.Second, IdleTimeout: time.Minute, MaxConns: 7,
			Raw: &forward.Raw{Exclusive: true, QueueTimeout: 9 * time.Second, UserTimeout: 2 * time.Second}}},
		{"tcp ignores a raw section", func(l *config.Listener) {
			l.Mode = config.ModeTCP
			l.Raw = config.Raw{Exclusive: true}
		}, forward.Config{Name: "x", Listen: listen, Upstreams: ups,
			ConnectTimeout: 3 * time.Second, IdleTimeout: time.Minute, MaxConns: 7}},
		{"ftp", func(l *config.Listener) {
			l.Mode = config.ModeFTP
			l.FTP = config.FTP{DataPorts: [2]uint16{20002, 20010}, PublicIP: netip.MustParseAddr("127.0.0.5"),
				TrustServerIP: true, DataTimeout: 4 * time.Second}
		}, ftppassive.Config{Name: "x", Listen: listen, Upstreams: ups,
			DataPorts: [2]uint16{20002, 20010}, PublicIP: netip.MustParseAddr("127.0.0.5"),
			TrustServerIP: true, DataTimeout: 4 * time.Second,
			ConnectTimeout: 3 * time.Second, IdleTimeout: time.Minute, MaxConns: 7}},
		{"udp", func(l *config.Listener) {
			l.Mode = config.ModeUDP
			l.UDP = config.UDP{SessionTimeout: 8 * time.Second, MaxSessions: 5, ReadBuffer: 8192, WriteBuffer: 16384}
		}, udpstream.Config{Name: "x", Listen: listen, Upstreams: ups,
			SessionTimeout: 8 * time.Second, MaxSessions: 5, ReadBuffer: 8192, WriteBuffer: 16384}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := shared
			tt.in(&l)
			if got := mapped(l); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mapped:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
