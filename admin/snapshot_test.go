package admin

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fill sets every number in every section of s to v, by reflection, so that
// a field added later cannot be forgotten by merge unnoticed.
func fill(v int) Snapshot {
	s := Snapshot{Listener: "x", Mode: "tcp", Conns: &Conns{}, UDP: &UDP{Dropped: map[string]uint64{"acl": uint64(v)}}, FTP: &FTP{}, Raw: &Raw{},
		TLS: &TLS{Client: &Handshakes{Failed: map[string]uint64{"expired": uint64(v)}}, Upstream: &Handshakes{Failed: map[string]uint64{"unknown_authority": uint64(v)}}}}
	var set func(rv reflect.Value)
	set = func(rv reflect.Value) {
		for i := range rv.NumField() {
			f := rv.Field(i)
			switch f.Kind() {
			case reflect.Uint64:
				f.SetUint(uint64(v))
			case reflect.Int64: // gauges and time.Duration
				f.SetInt(int64(v))
			case reflect.Pointer:
				if !f.IsNil() { // the sections fill made; Rates is admin's own
					set(f.Elem())
				}
			}
		}
	}
	set(reflect.ValueOf(&s).Elem())
	return s
}

func TestMergeSumsEveryField(t *testing.T) {
	got := merge(fill(1), fill(2))
	want := fill(3)
	want.FTP.DataPorts = 2 // the pool's size, not a count: the larger one
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merge(1, 2):\n got %+v %+v %+v %+v %+v\nwant %+v %+v %+v %+v %+v",
			got, *got.Conns, *got.UDP, *got.FTP, *got.Raw, want, *want.Conns, *want.UDP, *want.FTP, *want.Raw)
	}
	if s := fill(1); s.Raw.WaitTime != time.Duration(1) {
		t.Fatalf("fill did not reach Raw.WaitTime")
	}
	// A section only one side has is kept as it is.
	a := Snapshot{Listener: "x", UDP: &UDP{SessionsCreated: 4}}
	if m := merge(a, Snapshot{Listener: "x", Conns: &Conns{Accepted: 1}}); m.UDP.SessionsCreated != 4 || m.Conns.Accepted != 1 {
		t.Errorf("one-sided sections: %+v %+v", m.UDP, m.Conns)
	}
	// The facts are the serving instance's, whichever order they come in.
	serving := Snapshot{Listener: "x", State: StateServing, Listen: "new"}
	draining := Snapshot{Listener: "x", State: StateDraining, Listen: "old"}
	carried := Snapshot{Listener: "x"}
	for _, order := range [][]Snapshot{{serving, draining, carried}, {draining, serving, carried}, {carried, draining, serving}} {
		m := order[0]
		for _, s := range order[1:] {
			m = merge(m, s)
		}
		if m.State != StateServing || m.Listen != "new" {
			t.Errorf("merged facts %q %q, want the serving instance's", m.State, m.Listen)
		}
	}
}

// TestStatusJSONEmptyListsAreArrays: a list with nothing in it reads [] in
// /status.json, not null (which a script's len() or for loop trips on),
// and the caller's values are left as they were.
func TestStatusJSONEmptyListsAreArrays(t *testing.T) {
	acl := &ACL{File: "relay_hba.conf"}
	raw := &Raw{}
	sr := &statusReader{
		gather: func() []Snapshot {
			return []Snapshot{{Listener: "printer", Mode: "raw", State: StateServing, Raw: raw}}
		},
		relay: func() Relay { return Relay{ACL: acl} },
		now:   time.Now,
	}
	body := httptestGet(t, http.HandlerFunc(sr.serveJSON), "/status.json")
	for _, want := range []string{`"recent_rejections": []`, `"decisions": []`, `"printing": []`, `"upstreams": []`} {
		if !strings.Contains(body, want) {
			t.Errorf("/status.json lacks %s:\n%s", want, body)
		}
	}
	if acl.Recent != nil || raw.Printing != nil {
		t.Error("the caller's ACL or Raw was changed")
	}
}
