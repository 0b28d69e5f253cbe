package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
relay_reloads_total{result="failure"} 0
relay_reloads_total{result="success"} 7
broken line
`))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 42 || m[`relay_reloads_total{result="success"}`] != 7 || len(m) != 3 {
		t.Fatalf("parsed %v", m)
	}
}

func TestSummarizeStacks(t *testing.T) {
	dump := `SIGQUIT: quit
PC=0x4711 m=0 sigcode=0

goroutine 0 gp=0x1 m=0 mp=0x2 [idle]:
runtime.futex(0x1)
	/usr/lib/go/src/runtime/sys_linux_amd64.s:557 +0x21

goroutine 7 gp=0x3 m=nil [select, 2 minutes]:
runtime.gopark(0x1)
	/usr/lib/go/src/runtime/proc.go:460 +0xce
github.com/edgerelay/relay/forward.(*Listener).connWorker(0xc0001, {0x0})
	/src/forward/listener.go:489 +0x1a5

goroutine 8 gp=0x4 m=nil [select]:
runtime.gopark(0x1)
	/usr/lib/go/src/runtime/proc.go:460 +0xce
github.com/edgerelay/relay/forward.(*Listener).connWorker(0xc0002, {0x0})
	/src/forward/listener.go:489 +0x1a5

goroutine 9 gp=0x5 m=nil [IO wait]:
internal/poll.runtime_pollWait(0x1)
	/usr/lib/go/src/runtime/netpoll.go:351 +0x85
github.com/edgerelay/relay/forward.(*Listener).acceptLoop(0xc0003)
	/src/forward/listener.go:320 +0x55
`
	counts, summary := summarizeStacks(dump, "github.com/edgerelay/relay/")
	if counts[idleWorker] != 2 || counts["forward.(*Listener).acceptLoop [IO wait]"] != 1 || counts["runtime.futex [idle]"] != 1 || len(counts) != 3 {
		t.Fatalf("counts %v", counts)
	}
	if !strings.HasPrefix(summary, "2× "+idleWorker) {
		t.Fatalf("summary %q: the most common first", summary)
	}
}

func TestRSSGrowth(t *testing.T) {
	flat := []soakSample{{rssKiB: 100}, {rssKiB: 120}, {rssKiB: 110}, {rssKiB: 115}, {rssKiB: 118}, {rssKiB: 121}}
	if msg := rssGrowth(flat); msg != "" {
		t.Fatalf("flat memory reported: %s", msg)
	}
	leak := []soakSample{{rssKiB: 100}, {rssKiB: 110}, {rssKiB: 130}, {rssKiB: 140}, {rssKiB: 160}, {rssKiB: 170}}
	if msg := rssGrowth(leak); !strings.Contains(msg, "grew from 110 KiB") || !strings.Contains(msg, "to 170 KiB") {
		t.Fatalf("growing memory: %q", msg)
	}
	if msg := rssGrowth(leak[:5]); msg != "" {
		t.Fatalf("five rounds are too few to judge, got %q", msg)
	}
}

func TestReloadVariant(t *testing.T) {
	orig := relayConfigHead + "  - name: a\n    mode: tcp\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n"
	extra := "  - name: soak-extra\n    mode: tcp\n    listen: 127.0.0.1:7\n    upstream: 127.0.0.1:9\n"
	want := []struct {
		timeout string
		extra   bool
	}{{"59m", false}, {"59m", true}, {"1h", true}, {"1h", false}, {"59m", false}}
	prev := orig
	for n, w := range want {
		got, err := reloadVariant(orig, n, 7)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, "idle_timeout: "+w.timeout+"\n") || strings.HasSuffix(got, extra) != w.extra {
			t.Fatalf("variant %d:\n%s", n, got)
		}
		if got == prev {
			t.Fatalf("variant %d changes nothing", n)
		}
		prev = got
	}
	if _, err := reloadVariant("listeners: []\n", 0, 7); err == nil {
		t.Fatal("a config without the default idle timeout was not reported")
	}
}

func TestHexAddr(t *testing.T) {
	for in, want := range map[string]string{"0100007F:1F90": "127.0.0.1:8080", "00000000:0000": "0.0.0.0:0", "zz": "zz"} {
		if got := hexAddr(in); got != want {
			t.Errorf("hexAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.log")
	log := `{"level":"warn","message":"queue timeout"}
{"level":"error","message":"accept failed"}
panic: boom
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got := errorLines(path)
	if len(got) != 2 || !strings.Contains(got[0], "accept failed") || got[1] != "panic: boom" {
		t.Fatalf("errorLines = %q", got)
	}
}
