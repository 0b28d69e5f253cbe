package main

import (
	"errors"
	"strings"
	"testing"
)

// iperfJSON is `iperf3 -J` output cut to what parseIperf reads (iperf 3.12).
const iperfJSON = `{"start": {"version": "iperf 3.12"}, "intervals": [],
 "end": {"streams": [],
  "sum_sent": {"start": 0, "end": 2.0, "seconds": 2.0, "bytes": 2500000000, "bits_per_second": 1e10, "retransmits": 0, "sender": true},
  "sum_received": {"start": 0, "end": 2.0, "seconds": 2.0, "bytes": 2499000000, "bits_per_second": 9.996e9, "sender": true},
  "cpu_utilization_percent": {"host_total": 40.5, "host_user": 1, "host_system": 39.5, "remote_total": 30, "remote_user": 2, "remote_system": 28}}}`

func TestParseIperf(t *testing.T) {
	r, err := parseIperf([]byte(iperfJSON))
	if err != nil {
		t.Fatal(err)
	}
	if r.End.SumSent.Bytes != 2500000000 || r.End.SumReceived.Bps != 9.996e9 ||
		r.End.CPU.Host != 40.5 || r.End.CPU.Remote != 30 || r.End.SumSent.Seconds != 2 {
		t.Errorf("parsed %+v", r.End)
	}
}

func TestParseIperfFailures(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
		integrity        bool
	}{
		{"error reported", `{"start": {}, "intervals": [], "end": {}, "error": "unable to connect to server: Connection refused"}`,
			"unable to connect", false},
		{"not JSON", `iperf3: error - unable to connect`, "iperf3 -J output", false},
		{"nothing received", strings.Replace(iperfJSON, `"bytes": 2499000000`, `"bytes": 0`, 1), "received nothing", true},
		{"more received than sent", strings.Replace(iperfJSON, `"bytes": 2499000000`, `"bytes": 2600000000`, 1), "sent 2500000000 bytes", true},
	} {
		_, err := parseIperf([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
			continue
		}
		if errors.Is(err, errIntegrity) != tc.integrity {
			t.Errorf("%s: %v: integrity %v, want %v", tc.name, err, !tc.integrity, tc.integrity)
		}
	}
}
