package daemon

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/internal/world"
)

// fakeFTP greets with 220 and answers every command line with "200 <cmd>",
// enough to prove a control session lives through a reload.
func fakeFTP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fmt.Fprint(c, "220 fake ready\r\n")
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "200 %s\r\n", strings.TrimSpace(sc.Text()))
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

const reloadYAML = `
admin: {listen: ""}
shutdown_grace: 2s
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%[1]d", upstream: "%[2]s"}
  - {name: rtb, mode: udp, listen: "127.0.0.1:%[3]d", upstream: "%[4]s"}
  - name: ftp
    mode: ftp
    listen: "127.0.0.1:%[5]d"
    upstream: "%[6]s"
    ftp: {data_ports: "%[7]d-%[8]d"}
%[9]s`

// TestReloadKeepsLiveSessions: a reload that adds and removes listeners keeps
// the TCP connection, UDP session and FTP session of unchanged listeners; a
// bad config changes nothing.
func TestReloadKeepsLiveSessions(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web, rtb, ftpSrv := newTCPEcho(t, "web"), newUDPEcho(t, "rtb"), fakeFTP(t)
	extra := newTCPEcho(t, "extra")
	webPort, rtbPort, ftpPort := freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")
	gonePort, extraPort, dataPort := freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp")
	render := func(tail string) string {
		return fmt.Sprintf(reloadYAML, webPort, web.addr(), rtbPort, rtb.addr(), ftpPort, ftpSrv,
			dataPort, dataPort, tail)
	}
	gone := fmt.Sprintf(`  - {name: gone, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}`, gonePort, web.addr())
	w := startWorld(t, render(gone), nil)
	at := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

	tcpLive, err := dialLine(t, "", at(webPort))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tcpLive.roundTrip("a"); err != nil || got != "web:a" {
		t.Fatalf("web before reload: %q %v", got, err)
	}
	udpLive := udpClient(t, "127.0.0.1")
	if got, err := udpRoundTrip(udpLive, at(rtbPort), "a", 2*time.Second); err != nil || got != "rtb:a" {
		t.Fatalf("rtb before reload: %q %v", got, err)
	}
	ftpLive, err := dialLine(t, "", at(ftpPort))
	if err != nil {
		t.Fatal(err)
	}
	if greet, err := ftpLive.r.ReadString('\n'); err != nil || !strings.HasPrefix(greet, "220 ") {
		t.Fatalf("ftp greeting: %q %v", greet, err)
	}

	// Remove "gone", add "extra".
	w.writeFile("relay.yaml", render(fmt.Sprintf(
		`  - {name: extra, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}`, extraPort, extra.addr())))
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if line := w.logs.Wait(t, "reload applied"); !world.ContainsAll(line,
		`"added":["extra"]`, `"changed":[]`, `"removed":["gone"]`, `"kept":3`) {
		t.Errorf("reload line does not name the listeners added and removed: %s", line)
	}
	if got, err := tcpLive.roundTrip("b"); err != nil || got != "web:b" {
		t.Fatalf("live TCP connection after reload: %q %v", got, err)
	}
	if got, err := udpRoundTrip(udpLive, at(rtbPort), "b", 2*time.Second); err != nil || got != "rtb:b" {
		t.Fatalf("live UDP session after reload: %q %v", got, err)
	}
	if got, err := ftpLive.roundTrip("NOOP\r"); err != nil || got != "200 NOOP\r" {
		t.Fatalf("live FTP session after reload: %q %v", got, err)
	}
	if got := tcpOutcome(t, "", at(extraPort)); got != "extra:hello" {
		t.Fatalf("added listener: %q", got)
	}
	world.Eventually(t, "the removed listener to stop accepting", func() bool {
		c, err := net.DialTimeout("tcp", at(gonePort), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})

	// A config that fails validation changes nothing.
	w.writeFile("relay.yaml", "listeners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:1-0\"}\n")
	if err := w.d.Reload(); err == nil {
		t.Fatal("reload accepted a broken config")
	}
	if got, err := tcpLive.roundTrip("c"); err != nil || got != "web:c" {
		t.Fatalf("live TCP connection after a failed reload: %q %v", got, err)
	}
	if got := tcpOutcome(t, "", at(extraPort)); got != "extra:hello" {
		t.Fatalf("extra listener after a failed reload: %q", got)
	}
	if !strings.Contains(w.logs.String(), "nothing changed") {
		t.Errorf("failed reload not logged:\n%s", w.logs.String())
	}
	tcpLive.Close()
	ftpLive.Close()
	_ = w.d.Close()
}

// notes records the systemd states the daemon announces.
type notes struct {
	mu  sync.Mutex // guards got
	got []string
}

func (n *notes) add(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, s)
	return nil
}
func (n *notes) Ready() error     { return n.add("READY") }
func (n *notes) Reloading() error { return n.add("RELOADING") }
func (n *notes) Stopping() error  { return n.add("STOPPING") }

// TestReloadChangedListener: a listener whose upstream changes is rebound;
// its live connection keeps the old upstream until it ends, new connections
// reach the new one, and no connection is refused across the swap. The log
// level and the systemd notifications follow the reload.
func TestReloadChangedListener(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	oldB, newB := newTCPEcho(t, "old"), newTCPEcho(t, "new")
	port := freePort(t, "tcp")
	render := func(level, upstream string) string {
		return fmt.Sprintf("admin: {listen: \"\"}\nshutdown_grace: 5s\nlog: {level: %s}\nlisteners:\n"+
			"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", level, port, upstream)
	}
	w := startWorld(t, render("info", oldB.addr()), nil)
	n := &notes{}
	w.d.notify = n
	at := fmt.Sprintf("127.0.0.1:%d", port)
	live, err := dialLine(t, "", at)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := live.roundTrip("1"); err != nil || got != "old:1" {
		t.Fatalf("before: %q %v", got, err)
	}

	// Keep connecting during the reload: none may be refused.
	stop := make(chan struct{})
	failures := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.DialTimeout("tcp", at, time.Second)
			if err != nil {
				select {
				case failures <- err.Error():
				default:
				}
				return
			}
			c.Close()
		}
	}()
	w.writeFile("relay.yaml", render("warn", newB.addr()))
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	close(stop)
	wg.Wait()
	select {
	case f := <-failures:
		t.Fatalf("a connection was refused during the swap: %s", f)
	default:
	}

	if got, err := live.roundTrip("2"); err != nil || got != "old:2" {
		t.Fatalf("live connection after reload: %q %v (want the old upstream)", got, err)
	}
	if got := tcpOutcome(t, "", at); got != "new:hello" {
		t.Fatalf("new connection after reload: %q", got)
	}
	// At warn level the access line of the finished connection is not written.
	before := strings.Count(w.logs.String(), "\n")
	live.Close()
	if err := w.d.Shutdown(t.Context()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if lines := strings.Split(w.logs.String(), "\n")[before:]; strings.Contains(strings.Join(lines, "\n"), `"level":"info"`) {
		t.Errorf("info lines written after the level went to warn:\n%s", strings.Join(lines, "\n"))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if got := strings.Join(n.got, ","); got != "RELOADING,READY,STOPPING" {
		t.Errorf("notifications %s, want RELOADING,READY,STOPPING", got)
	}
}
