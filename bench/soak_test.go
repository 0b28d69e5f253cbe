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

// stackDump is a SIGQUIT dump cut down from a relay's at the end of a
// soak: a thread's scheduler stack (not a goroutine), main, a runtime
// goroutine, one started by the standard library, the admin endpoint's
// connection of the last scrape, two idle connection workers and an
// accept loop.
const stackDump = `SIGQUIT: quit
PC=0x4711 m=0 sigcode=0

goroutine 0 gp=0x1 m=0 mp=0x2 [idle]:
runtime.futex(0x1)
	/usr/lib/go/src/runtime/sys_linux_amd64.s:557 +0x21

goroutine 1 gp=0x3c312be501e0 m=nil [select]:
runtime.gopark(0x3c312c4c1b70?, 0x4?, 0xff?, 0x0?, 0x3c312c4c1b10?)
	runtime/proc.go:462 +0xce fp=0x3c312c035948 sp=0x3c312c035928 pc=0x4860ee
runtime.selectgo(0x3c312c035b70, 0x3c312c4c1b08, 0x3c312c007ab0?, 0x0, 0x0?, 0x1)
	runtime/select.go:351 +0xaa5 fp=0x3c312c035a78 sp=0x3c312c035948 pc=0x4643a5
main.serveUntilStopped(0x3c312c075400, {{0x7f4228126200, 0x3c312c0be150}, 0xff, {0x0, 0x0, 0x0}, ...}, ...)
	github.com/edgerelay/relay/cmd/relay/main.go:229 +0x1e5 fp=0x3c312c035bc8 sp=0x3c312c035a78 pc=0x8d0c85
main.main()
	github.com/edgerelay/relay/cmd/relay/main.go:50 +0x5e fp=0x3c312c035f48 sp=0x3c312c035f00 pc=0x8cf5be
runtime.main()
	runtime/proc.go:290 +0x2d5 fp=0x3c312c035fe0 sp=0x3c312c035f48 pc=0x451075
runtime.goexit({})
	runtime/asm_amd64.s:1771 +0x1 fp=0x3c312c035fe8 sp=0x3c312c035fe0 pc=0x48d6e1

goroutine 2 gp=0x3c312be50780 m=nil [force gc (idle)]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
	runtime/proc.go:462 +0xce fp=0x3c312be94fa8 sp=0x3c312be94f88 pc=0x4860ee
runtime.goparkunlock(...)
	runtime/proc.go:468
runtime.forcegchelper()
	runtime/proc.go:375 +0xb3 fp=0x3c312be94fe0 sp=0x3c312be94fa8 pc=0x451393
runtime.goexit({})
	runtime/asm_amd64.s:1771 +0x1 fp=0x3c312be94fe8 sp=0x3c312be94fe0 pc=0x48d6e1
created by runtime.init.7 in goroutine 1
	runtime/proc.go:363 +0x1a

goroutine 24 gp=0x3c312bf03c20 m=nil [select, 3 minutes]:
runtime.gopark(0x3c312be92798?, 0x2?, 0xa0?, 0xce?, 0x3c312be9278c?)
	runtime/proc.go:462 +0xce fp=0x3c312be92628 sp=0x3c312be92608 pc=0x4860ee
runtime.selectgo(0x3c312be92798, 0x3c312be92788, 0x0?, 0x0, 0x0?, 0x1)
	runtime/select.go:351 +0xaa5 fp=0x3c312be92758 sp=0x3c312be92628 pc=0x4643a5
os/signal.NotifyContext.func1()
	os/signal/signal.go:292 +0x7c fp=0x3c312be927e0 sp=0x3c312be92758 pc=0x8c941c
runtime.goexit({})
	runtime/asm_amd64.s:1771 +0x1 fp=0x3c312be927e8 sp=0x3c312be927e0 pc=0x48d6e1
created by os/signal.NotifyContext in goroutine 1
	os/signal/signal.go:291 +0x158

goroutine 31 gp=0x1 m=nil [sync.Cond.Wait]:
runtime.gopark(0x1)
	runtime/proc.go:462 +0xce
sync.(*Cond).Wait(0x1)
	sync/cond.go:71 +0xcd
net/http.(*connReader).abortPendingRead(0x1)
	net/http/server.go:736 +0xb6
net/http.(*conn).serve(0x1, {0xa9c7c8, 0x1})
	net/http/server.go:2139 +0x819
net/http.(*Server).Serve.gowrap3()
	net/http/server.go:3454 +0x28
runtime.goexit({})
	runtime/asm_amd64.s:1771 +0x1
created by net/http.(*Server).Serve in goroutine 30
	net/http/server.go:3454 +0x485

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

func TestStackCounts(t *testing.T) {
	counts := stackCounts(stackDump)
	want := map[string]int{
		idleWorker: 2,
		"forward.(*Listener).acceptLoop [IO wait]":               1,
		"main.serveUntilStopped [select]":                        1,
		"os/signal.NotifyContext.func1 [select]":                 1,
		adminConnClass:                                           1,
		runtimeClass + "runtime.forcegchelper [force gc (idle)]": 1,
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("counts\n%v\nwant\n%v", counts, want)
	}
	if s := summarizeCounts(counts); !strings.HasPrefix(s, "2× "+idleWorker+"; 1× ") {
		t.Fatalf("summary %q: the most common first", s)
	}
}

// leakBlock is a goroutine waiting where no pool of the relay waits.
const leakBlock = `
goroutine %d gp=0x9 m=nil [chan receive, 5 minutes]:
runtime.gopark(0x1)
	/usr/lib/go/src/runtime/proc.go:460 +0xce
github.com/edgerelay/relay/daemon.(*Daemon).watchOld(0xc0009)
	/src/daemon/upgrade.go:200 +0x55
`

// TestCompareStacks: a class outside the pools that grows fails, named
// with its counts; idle workers beyond the baseline but within their
// bound for the listeners running pass, beyond it fail.
func TestCompareStacks(t *testing.T) {
	base := stackCounts(stackDump)
	bounds := stackBounds(base, 2)
	if got := compareClasses(base, stackCounts(stackDump), bounds); len(got) != 0 {
		t.Fatalf("the baseline against itself: %q", got)
	}

	leak := stackDump
	for g := range 3 {
		leak += fmt.Sprintf(leakBlock, 100+g)
	}
	got := compareClasses(base, stackCounts(leak), bounds)
	if len(got) != 1 || got[0] != "3× daemon.(*Daemon).watchOld [chan receive] at the end, 0 at the baseline" {
		t.Fatalf("a leak of 3 goroutines: %q", got)
	}

	workers := func(n int) string {
		d := stackDump
		for g := range n {
			d += fmt.Sprintf("\ngoroutine %d gp=0x9 m=nil [select]:\nruntime.gopark(0x1)\n\t/p.go:1\n"+
				"github.com/edgerelay/relay/forward.(*Listener).connWorker(0xc0001, {0x0})\n\t/src/forward/listener.go:489 +0x1a5\n", 200+g)
		}
		return d
	}
	if got := compareClasses(base, stackCounts(workers(30)), bounds); len(got) != 0 {
		t.Fatalf("32 idle workers for 2 listeners: %q", got)
	}
	got = compareClasses(base, stackCounts(workers(31)), bounds)
	if len(got) != 1 || got[0] != "33× "+idleWorker+", more than its bound 32" {
		t.Fatalf("33 idle workers for 2 listeners: %q", got)
	}
}

func TestForwardListeners(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.yaml")
	cfg := relayConfigHead + "  - name: a\n    mode: tcp\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n" +
		"  - name: b\n    mode: udp\n    listen: 127.0.0.1:3\n    upstream: 127.0.0.1:4\n" +
		"  - name: c\n    mode: raw\n    listen: 127.0.0.1:5\n    upstream: 127.0.0.1:6\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := forwardListeners(path); err != nil || n != 2 {
		t.Fatalf("forwardListeners = %d, %v; want 2 (tcp and raw, not udp)", n, err)
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

// TestFDKinds: this process's own descriptors, named as the soak compares
// them: pipe ends as one kind, a listening socket by its address, a
// connected one with its ephemeral local port as "*".
func TestFDKinds(t *testing.T) {
	before, err := fdKinds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	after, err := fdKinds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	listening := "tcp " + ln.Addr().String() + "->0.0.0.0:0 LISTEN"
	dialed := "tcp 127.0.0.1:*->" + ln.Addr().String() + " ESTABLISHED"
	if after[pipeKind] != before[pipeKind]+2 || after[listening] != 1 || after[dialed] != 1 {
		t.Fatalf("pipes %d (%d before), %q %d, %q %d; all: %v", after[pipeKind], before[pipeKind],
			listening, after[listening], dialed, after[dialed], after)
	}
}
