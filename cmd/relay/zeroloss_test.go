package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

const zeroLossYAML = `admin: {listen: "127.0.0.1:%[1]d"}
log: {format: json}
shutdown_grace: 5s
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%[2]d", upstream: "%[3]s"}
  - {name: bulk, mode: tcp, listen: "127.0.0.1:%[4]d", upstream: "%[5]s"}
  - {name: printer, mode: raw, listen: "127.0.0.1:%[6]d", upstream: "%[5]s"}
  - name: files
    mode: ftp
    listen: "127.0.0.1:%[7]d"
    upstream: "%[8]s"
    ftp: {data_ports: "%[9]d-%[10]d"}
  - name: rtb
    mode: udp
    listen: "127.0.0.1:%[11]d"
    upstream: "%[12]s"
    udp: {session_timeout: 1s}
`

// backendSet is one generation of upstreams; the two configs of the test
// point every listener at a different set.
type backendSet struct {
	echo, stream, ftp *world.Backend
	udp               net.PacketConn
}

func newBackendSet(t *testing.T, g gate) backendSet {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	_ = pc.(*net.UDPConn).SetReadBuffer(testSocketBuffer)
	go udpEchoServer(pc)
	return backendSet{
		echo:   world.NewBackend(t, world.Echo),
		stream: world.NewBackend(t, streamBackend(g)),
		ftp:    world.NewBackend(t, ftpBackend(g)),
		udp:    pc,
	}
}

// TestZeroLossOperations keeps short connections, long SHA-256-checked
// transfers on TCP, raw and FTP and a sequenced UDP stream going through
// the real binary while it reloads 50 times between two configs that change
// every listener, then upgrades its binary, then restarts the same way.
// Nothing may be refused or reset, every transfer must arrive intact, UDP
// loss must stay within the stream's own baseline, the old processes exit
// 0 once their transfers end, and the last process's goroutines and file
// descriptors come back to the first one's baseline.
func TestZeroLossOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	g := make(gate)
	var openOnce sync.Once
	openGate := func() { openOnce.Do(func() { close(g) }) }
	defer openGate()
	sets := [2]backendSet{newBackendSet(t, g), newBackendSet(t, g)}
	adminPort, webPort, bulkPort := world.ReserveTCPPort(t), world.ReserveTCPPort(t), world.ReserveTCPPort(t)
	rawPort, ftpPort, dataBase := world.ReserveTCPPort(t), world.ReserveTCPPort(t), world.ReserveTCPPortRun(t, 40)
	udpPort := world.ReserveUDPPort(t)
	render := func(s backendSet) string {
		return fmt.Sprintf(zeroLossYAML, adminPort, webPort, s.echo.Addr(), bulkPort, s.stream.Addr(), rawPort,
			ftpPort, s.ftp.Addr(), dataBase, dataBase+39, udpPort, s.udp.LocalAddr())
	}
	at := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	cfg := writeConfig(t, render(sets[0]))
	first, logs := startCopy(t, cfg)
	defer func() { _ = first.cmd.Process.Kill() }()
	admin := "http://" + at(adminPort) + "/metrics"

	// Warm up every path, then take the baselines: UDP loss and the
	// process's goroutines and descriptors.
	for i := range 20 {
		if err := echoOnce(at(webPort), fmt.Sprintf("warm %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	_ = uc.SetReadBuffer(testSocketBuffer)
	stream := newUDPStream(uc, netip.MustParseAddrPort(at(udpPort)))
	var tl timeline
	const baseSent = 500
	stream.run(nil, time.Millisecond, baseSent)
	stream.settle(time.Second) // the last replies in flight
	baseLost := stream.lost(0, baseSent)
	// What the kernel drops at the test's own sockets (the client and the
	// two upstreams) when the test is too starved to read them is the
	// harness's loss, not the relay's: it is not counted against the relay.
	// (Seen: 104 at once, four runs of this test sharing 2 cores.)
	testDrops := func() uint64 {
		n, err := kernelDrops(uc.LocalAddr().(*net.UDPAddr).Port,
			sets[0].udp.LocalAddr().(*net.UDPAddr).Port, sets[1].udp.LocalAddr().(*net.UDPAddr).Port)
		if err != nil {
			t.Logf("the kernel's drops at the test's sockets unknown: %v", err)
		}
		return n
	}
	drops0 := testDrops()
	goroutines0, fds0 := processFigures(t, admin)

	// Load: short connections, the UDP stream, long transfers.
	stopLoad := make(chan struct{})
	dialers := []*dialer{startDialer(at(webPort)), startDialer(at(webPort))}
	udpDone := make(chan struct{})
	go func() { defer close(udpDone); stream.run(stopLoad, time.Millisecond, 60000) }()
	var transfers sync.WaitGroup
	results := make(chan error, 9)
	const size = 4 << 20
	startTransfers := func(round int) {
		for i, fetch := range []func() error{
			func() error { return fetchStream(at(bulkPort), size, uint64(round*10+1)) },
			func() error { return fetchStream(at(rawPort), size, uint64(round*10+2)) },
			func() error { return fetchFTP(at(ftpPort), size, uint64(round*10+3)) },
		} {
			transfers.Add(1)
			go func() {
				defer transfers.Done()
				if err := fetch(); err != nil {
					results <- fmt.Errorf("round %d transfer %d: %w", round, i, err)
				}
			}()
		}
	}
	startTransfers(1)

	for i := range 50 {
		if err := os.WriteFile(cfg, []byte(render(sets[(i+1)%2])), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = first.cmd.Process.Signal(syscall.SIGHUP)
		logs.WaitCount(t, i+1, "reload applied")
		tl.mark(fmt.Sprintf("reload %d applied", i+1))
	}
	if n := logs.Count("reload applied", `"changed":["bulk","files","printer","rtb","web"]`, `"kept":0`); n != 50 {
		t.Errorf("%d of 50 reloads changed every listener", n)
	}
	// After each phase, the process serving now is back near the
	// baseline. After the reloads, round 1's transfers (held at the gate)
	// and the load in flight are still open, about 20 goroutines and
	// descriptors; a leak per reload would be 50 or more.
	backToBaseline := func(phase string, extra int) {
		var g, f int
		world.Eventually(t, "goroutines and descriptors back near the baseline after "+phase, func() bool {
			g, f = processFigures(t, admin)
			return g <= goroutines0+10+extra && f <= fds0+10+extra
		})
		t.Logf("after %s: goroutines %d, open fds %d", phase, g, f)
	}
	backToBaseline("50 reloads", 30)
	startTransfers(2)
	tl.mark("upgrade 1 signalled")
	second := upgrade(t, first.cmd.Process.Pid, logs, 1)
	tl.mark("upgrade 1 served")
	defer func() { _ = syscall.Kill(second, syscall.SIGKILL) }()
	backToBaseline("the upgrade", 4) // round 2 dialled the old process; one may have raced over
	startTransfers(3)
	tl.mark("upgrade 2 signalled")
	third := upgrade(t, second, logs, 2)
	tl.mark("upgrade 2 served")
	defer func() { _ = syscall.Kill(third, syscall.SIGKILL) }()

	openGate()
	transfers.Wait()
	close(results)
	for err := range results {
		t.Error(err)
	}
	close(stopLoad)
	for i, d := range dialers {
		d.finish(t, fmt.Sprintf("dialer %d", i))
	}
	<-udpDone
	stream.settle(time.Second) // the last replies in flight
	sent := stream.sentSoFar() - baseSent
	lost := stream.lost(baseSent, baseSent+sent)
	harness := min(testDrops()-drops0, lost)
	if lost-harness > baseLost+sent/1000 {
		t.Errorf("UDP: %d of %d datagrams lost in the relay during the operations (%d more at the test's own sockets); "+
			"baseline %d of %d; lost: %s", lost-harness, sent, harness, baseLost, baseSent,
			stream.lostRuns(baseSent, baseSent+sent, &tl))
	}
	t.Logf("short connections %d, UDP lost %d of %d, %d of them at the test's sockets (baseline %d of %d)",
		dialers[0].ok.Load()+dialers[1].ok.Load(), lost, sent, harness, baseLost, baseSent)
	if err := first.cmd.Wait(); err != nil {
		t.Errorf("first process: %v, want exit 0 after its drain", err)
	}
	logs.WaitCount(t, 2, "relay stopped") // the first two processes
	// The slack covers idle connection workers (up to 16 per listener
	// stay parked) and pooled splice pipes, which the baseline's warm-up
	// may not have grown to the same count; a leak per connection or per
	// reload would be hundreds.
	var goroutines, fds int
	world.Eventually(t, "goroutines and descriptors back to the baseline", func() bool {
		goroutines, fds = processFigures(t, admin)
		return goroutines <= goroutines0+10 && fds <= fds0+10
	})
	t.Logf("goroutines %d (baseline %d), open fds %d (baseline %d)", goroutines, goroutines0, fds, fds0)
	_ = syscall.Kill(third, syscall.SIGTERM)
	logs.WaitCount(t, 3, "relay stopped")
}

// upgrade sends SIGUSR2 to pid and returns the pid of the process that
// took over, once the old one says so (the n-th time in this log).
func upgrade(t testing.TB, pid int, logs *world.LogBuffer, n int) int {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	lines := logs.WaitCount(t, n, "the new process serves")
	m := regexp.MustCompile(`"pid":(\d+)`).FindStringSubmatch(lines[n-1])
	if m == nil {
		t.Fatalf("no pid in %s", lines[n-1])
	}
	next, _ := strconv.Atoi(m[1])
	return next
}

// collectLines copies the relay's log lines into logs until the output ends.
func collectLines(r *bufio.Reader, logs *world.LogBuffer) {
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			_, _ = logs.Write([]byte(line))
		}
		if err != nil {
			return
		}
	}
}

// processFigures reads go_goroutines and process_open_fds from /metrics.
func processFigures(t *testing.T, url string) (goroutines, fds int) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_goroutines":
			goroutines = int(v)
		case "process_open_fds":
			fds = int(v)
		}
	}
	return goroutines, fds
}

// testSocketBuffer is the receive buffer of the test's own UDP sockets:
// at the default 208 KiB a test starved for a few hundred ms lost datagrams
// there. The kernel caps it at net.core.rmem_max.
const testSocketBuffer = 4 << 20

// timeline records when the operations under test happened, so that a lost
// datagram can be placed among them ("sent 223ms after upgrade 1 served").
type timeline struct {
	mu    sync.Mutex // guards the following
	marks []mark
}

type mark struct {
	at   time.Time
	what string
}

func (tl *timeline) mark(what string) {
	tl.mu.Lock()
	tl.marks = append(tl.marks, mark{time.Now(), what})
	tl.mu.Unlock()
}

// place says how long after the latest mark before it t was.
func (tl *timeline) place(t time.Time) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	where := "before the operations"
	for _, m := range tl.marks {
		if !m.at.After(t) {
			where = fmt.Sprintf("%v after %s", t.Sub(m.at).Round(time.Millisecond), m.what)
		}
	}
	return where
}

// kernelDrops sums what the kernel dropped at the IPv4 UDP sockets of these
// local ports (the drops column of /proc/net/udp: a full receive buffer),
// which tells a loss at the test's own sockets from one in the relay.
func kernelDrops(ports ...int) (uint64, error) {
	table, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, err
	}
	var drops uint64
	for _, line := range strings.Split(string(table), "\n") {
		f := strings.Fields(line)
		if len(f) < 13 {
			continue
		}
		for _, port := range ports {
			if strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
				n, _ := strconv.ParseUint(f[12], 10, 64)
				drops += n
			}
		}
	}
	return drops, nil
}
