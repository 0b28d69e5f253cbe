package config

import (
	"strings"
	"testing"
	"time"
)

// TestHealthProbePayload: a udp listener's check may send a payload and
// expect an answer; a tcp listener's may not (its check is a connect).
func TestHealthProbePayload(t *testing.T) {
	cfg, err := parseString(t, "listeners:\n  - name: a\n    mode: udp\n    listen: 127.0.0.1:8100\n    upstream: 10.0.0.6:8100\n"+
		"    health: {interval: 10s, send: \"status\\n\", expect: \"ok\"}\n"+
		"  - name: b\n    mode: udp\n    listen: 127.0.0.1:8200\n    upstream: 10.0.0.6:8200\n    health: {interval: 10s, expect: \"\"}\n")
	if err != nil {
		t.Fatal(err)
	}
	want := Health{Interval: 10 * time.Second, Send: "status\n", Expect: "ok", ExpectReply: true}
	if h := cfg.Listeners[0].Health; h != want {
		t.Errorf("health %+v, want %+v", h, want)
	}
	if h := cfg.Listeners[1].Health; !h.ExpectReply || h.Expect != "" || h.Send != "" {
		t.Errorf("expect \"\" (any answer): health %+v", h)
	}
	var desc strings.Builder
	if err := cfg.Describe(&desc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(desc.String(), `send="status\n" expect="ok" (silence counts as down)`) {
		t.Errorf("relay check does not show the probe:\n%s", desc.String())
	}
	for _, key := range []string{"send", "expect"} {
		es := problemsOf(t, "listeners:\n  - name: a\n    mode: tcp\n    listen: 127.0.0.1:80\n    upstream: 10.0.0.5:80\n    health: {interval: 1s, "+key+": x}\n")
		if len(es) != 1 || es[0].Path != "listeners[0].health."+key || !strings.Contains(es[0].Msg, "only for udp") {
			t.Errorf("%s on a tcp listener: problems %v", key, es)
		}
	}
}
