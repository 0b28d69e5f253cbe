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
	if c, err := net.DialTimeout("tcp", at(gonePort), time.Second); err == nil {
		c.Close()
		t.Fatalf("removed listener still accepts")
	}

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
