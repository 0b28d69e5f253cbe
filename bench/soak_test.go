package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
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

func TestParseUpgraded(t *testing.T) {
	newPID, oldPID, took, err := parseUpgraded("relay upgraded: pid 812 serves tcp 127.0.0.1:4100 in place of pid 640 after 180ms\n")
	if err != nil || newPID != 812 || oldPID != 640 || took != 180*time.Millisecond {
		t.Fatalf("parseUpgraded = %d, %d, %v, %v", newPID, oldPID, took, err)
	}
	if _, _, _, err := parseUpgraded("relay upgrade: pid 640 still serves tcp 127.0.0.1:4100 after 30s"); err == nil {
		t.Fatal("a failed upgrade's line was parsed as a success")
	}
}

func TestUpgradeDue(t *testing.T) {
	u := &upgrader{every: 3}
	var due []int
	for n := range 12 {
		if u.due(n) {
			due = append(due, n)
		}
	}
	if fmt.Sprint(due) != "[3 7 11]" {
		t.Fatalf("upgrades at ticks %v, want one after every 3 reloads: [3 7 11]", due)
	}
	var none *upgrader
	if none.due(3) || (&upgrader{}).due(0) {
		t.Fatal("no upgrader, or every 0, upgraded")
	}
}

// TestOverdueOldProcess: an old process that exited within the bound
// passes, one that exited after it and one still running fail, named by
// pid; one whose time is not up is judged later, and at the end waited
// for (followed through a pidfd, as the bench follows a process another
// started).
func TestOverdueOldProcess(t *testing.T) {
	dir := t.TempDir()
	start := func(name string, argv ...string) *process {
		p, err := startProcess(dir, name, argv...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.stop(time.Second) })
		return p
	}
	const bound = 10 * time.Second // far above what holdings takes to read /proc/net on a busy machine
	quickAt := time.Now()
	quick := start("quick", "true")
	late := start("late", "true")
	stuck := start("stuck", "sleep", "30")
	draining := start("draining", "sleep", "30")
	<-quick.exited
	<-late.exited
	followed, err := adoptProcess("draining", draining.pid(), draining.logPath)
	if err != nil {
		t.Fatal(err)
	}
	u := &upgrader{start: quickAt, bound: bound, retired: []retiree{
		{p: quick, at: quickAt},
		{p: late, at: late.exitedAt.Add(-2 * bound)},
		{p: stuck, at: time.Now().Add(-2 * bound)},
		{p: followed, at: time.Now()},
	}}
	got := u.overdue(false)
	if len(got) != 2 || !strings.Contains(got[0], fmt.Sprintf("late pid %d", late.pid())) || !strings.Contains(got[0], "exited 20s later") ||
		!strings.Contains(got[1], fmt.Sprintf("stuck pid %d", stuck.pid())) || !strings.Contains(got[1], "still runs") {
		t.Fatalf("overdue = %q", got)
	}
	if u.reported != 3 {
		t.Fatalf("judged %d old processes, want 3: the draining one's time is not up", u.reported)
	}
	_ = draining.stop(time.Second) // its drain ends
	if got := u.overdue(true); len(got) != 0 {
		t.Fatalf("a process that exited within its bound failed: %q", got)
	}
	select {
	case <-followed.exited:
	default:
		t.Fatal("the final judgement did not wait for the draining process")
	}
}

// TestWitness: across echoes that answer everything the witness sees
// nothing wrong and counts what it carried; across ones that drop a
// datagram, refuse and cut connections, it names each.
func TestWitness(t *testing.T) {
	udp, err := listenUDPEcho()
	if err != nil {
		t.Fatal(err)
	}
	defer udp.close()
	tcp, err := listenTCP(echo)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.close()
	in := &instance{addrs: map[string]string{"stream-echo": udp.addr(), "short": tcp.addr()}}
	w, err := startWitness(in)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // traffic for the witness to carry
	failures, carried := w.finish()
	if len(failures) != 0 || carried.conns == 0 || carried.echoes < 10 || carried.datagrams < 50 {
		t.Fatalf("through echoes: failures %q, carried %+v", failures, carried)
	}

	// A UDP echo that drops the datagram numbered 7, and a TCP echo that
	// goes away in the middle, its connections with it, as an upgrade that
	// cut them would.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n >= 8 && binary.BigEndian.Uint64(buf) == 7 {
				continue
			}
			_, _ = pc.WriteToUDP(buf[:n], from)
		}
	}()
	gone, err := listenTCP(echo)
	if err != nil {
		t.Fatal(err)
	}
	in = &instance{addrs: map[string]string{"stream-echo": pc.LocalAddr().String(), "tls-echo": gone.addr()}}
	if w, err = startWitness(in); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	gone.close()
	time.Sleep(100 * time.Millisecond)
	failures, _ = w.finish()
	joined := strings.Join(failures, "\n")
	if !strings.Contains(joined, "to tls-echo ("+gone.addr()+")") || !strings.Contains(joined, "refused") ||
		!strings.Contains(joined, "the connection to tls-echo held across the upgrade") ||
		!strings.Contains(joined, "1 of ") || !strings.Contains(joined, "first: [7]") {
		t.Fatalf("a dropped datagram, a refused connection and a cut one: %q", failures)
	}

	// A route that refuses before the upgrade cannot witness it.
	dead := world.DeadAddr(t)
	if _, err := startWitness(&instance{addrs: map[string]string{"short": dead}}); err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("a witness on a refusing route: %v", err)
	}
}
