package deploy_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The HA test builds two relay boxes sharing a virtual address, as
// deploy/keepalived describes, out of network namespaces it creates and
// removes: a switch namespace with two bridges (front and venue LAN), the
// boxes, a client and a venue with the backends. Every address lives inside
// those namespaces (TEST-NET ranges); nothing leaves them.
const (
	vip       = "198.51.100.100"
	venueAddr = "203.0.113.50"
	webPort   = 8080
	ftpPort   = 2121
	udpPort   = 8100
)

// Box i (1 or 2) has front address 198.51.100.i and LAN address
// 203.0.113.i; the client is 198.51.100.10.
func boxFront(i int) string { return fmt.Sprintf("198.51.100.%d", i) }
func boxLAN(i int) string   { return fmt.Sprintf("203.0.113.%d", i) }

// haKills is how many times the test kills the MASTER's relay; the failover
// figures in the closing note are the median of HA_KILLS=5.
func haKills() int {
	if n, err := strconv.Atoi(os.Getenv("HA_KILLS")); err == nil && n > 0 {
		return n
	}
	return 1
}

type haWorld struct {
	t      *testing.T
	prefix string // namespace name prefix, unique to this run
	dir    string
	relay  string // the relay binary
	procs  sync.Map
}

func (w *haWorld) ns(name string) string { return w.prefix + name }

func (w *haWorld) ip(args ...string) {
	w.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		w.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// build creates the namespaces, bridges and links. Cleanup removes them.
func (w *haWorld) build() {
	w.t.Helper()
	names := []string{"sw", "b1", "b2", "cl", "ve"}
	for _, n := range names {
		w.ip("netns", "add", w.ns(n))
		w.t.Cleanup(func() { exec.Command("ip", "netns", "del", w.ns(n)).Run() })
		w.ip("-n", w.ns(n), "link", "set", "lo", "up")
	}
	sw := w.ns("sw")
	for _, br := range []string{"brf", "brl"} {
		w.ip("-n", sw, "link", "add", br, "type", "bridge")
		w.ip("-n", sw, "link", "set", br, "up")
	}
	// link puts interface ifname into namespace n with addr, its peer on
	// bridge br in the switch.
	link := func(n, ifname, peer, br, addr string) {
		w.ip("link", "add", ifname, "netns", w.ns(n), "type", "veth", "peer", "name", peer, "netns", sw)
		w.ip("-n", sw, "link", "set", peer, "master", br, "up")
		w.ip("-n", w.ns(n), "addr", "add", addr, "dev", ifname)
		w.ip("-n", w.ns(n), "link", "set", ifname, "up")
	}
	for i := 1; i <= 2; i++ {
		b := fmt.Sprintf("b%d", i)
		link(b, "eth0", b+"f", "brf", boxFront(i)+"/24")
		link(b, "eth1", b+"l", "brl", boxLAN(i)+"/24")
	}
	link("cl", "eth0", "clf", "brf", "198.51.100.10/24")
	link("ve", "eth0", "vel", "brl", venueAddr+"/24")
}

// inNS runs f on a thread switched into namespace n. The thread is never
// switched back: it ends with the goroutine, so nothing else runs there.
// Sockets made in f stay in n and can be used from any goroutine.
func (w *haWorld) inNS(n string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+w.ns(n), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// start runs a command in namespace n, its output in dir/name.log; Cleanup
// kills it. It returns the process so a test can kill it earlier.
func (w *haWorld) start(n, name string, args ...string) *exec.Cmd {
	w.t.Helper()
	logf, err := os.Create(filepath.Join(w.dir, name+".log"))
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", w.ns(n)}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	w.procs.Store(name, done)
	w.t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if w.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(w.dir, name+".log"))
			w.t.Logf("%s log (last 2000 bytes):\n%s", name, b[max(0, len(b)-2000):])
		}
	})
	return cmd
}

// kill ends a process started by start and waits for it.
func (w *haWorld) kill(name string, cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if done, ok := w.procs.Load(name); ok {
		<-done.(chan struct{})
	}
}

const relayYAML = `log: {level: info, format: json}
admin: {listen: 127.0.0.1:9090}
shutdown_grace: 1s
listeners:
  - {name: web, mode: tcp, listen: "%[1]s:%[2]d", upstream: "%[3]s:%[2]d", freebind: true, connect_timeout: 1s}
  - name: ftp
    mode: ftp
    listen: "%[1]s:%[4]d"
    upstream: "%[3]s:21"
    freebind: true
    ftp: {data_ports: 31000-31100}
  - {name: rtb, mode: udp, listen: "%[1]s:%[5]d", upstream: "%[3]s:%[5]d", freebind: true}
`

// keepalivedConf renders deploy/keepalived/keepalived.conf for box i: the
// shipped file with this world's address, script paths and, on box 2, the
// BACKUP's two lines.
func (w *haWorld) keepalivedConf(i int) string {
	w.t.Helper()
	b, err := os.ReadFile("keepalived/keepalived.conf")
	if err != nil {
		w.t.Fatal(err)
	}
	conf := string(b)
	repl := []string{
		"192.0.2.10/24", vip + "/24",
		"/usr/lib/relay/keepalived/check_relay.sh", filepath.Join(w.dir, "check_relay.sh"),
		"/usr/lib/relay/keepalived/notify.sh /run/relay-vrrp.state",
		filepath.Join(w.dir, "notify.sh") + " " + filepath.Join(w.dir, fmt.Sprintf("vrrp%d.state", i)),
	}
	if i == 2 {
		repl = append(repl, "state MASTER ", "state BACKUP ", "priority 150 ", "priority 100 ")
	}
	for j := 0; j < len(repl); j += 2 {
		if !strings.Contains(conf, repl[j]) {
			w.t.Fatalf("keepalived.conf no longer contains %q", repl[j])
		}
		conf = strings.ReplaceAll(conf, repl[j], repl[j+1])
	}
	return conf
}

func (w *haWorld) startRelay(i int) *exec.Cmd {
	w.t.Helper()
	cfg := filepath.Join(w.dir, "relay.yaml")
	return w.start(fmt.Sprintf("b%d", i), fmt.Sprintf("relay%d", i), w.relay, "-config", cfg)
}

func (w *haWorld) startKeepalived(i int) {
	w.t.Helper()
	conf := filepath.Join(w.dir, fmt.Sprintf("keepalived%d.conf", i))
	if err := os.WriteFile(conf, []byte(w.keepalivedConf(i)), 0o644); err != nil {
		w.t.Fatal(err)
	}
	p := func(s string) string { return filepath.Join(w.dir, fmt.Sprintf("%s%d.pid", s, i)) }
	w.start(fmt.Sprintf("b%d", i), fmt.Sprintf("keepalived%d", i), "keepalived",
		"-n", "-l", "-G", "-D", "-P", "-f", conf, "-p", p("ka"), "-r", p("vrrp"), "-c", p("chk"))
}

// holder returns which box (1 or 2) has the virtual address, 0 for none.
func (w *haWorld) holder() int {
	for i := 1; i <= 2; i++ {
		out, _ := exec.Command("ip", "-n", w.ns(fmt.Sprintf("b%d", i)), "-4", "addr", "show", "dev", "eth0").Output()
		if bytes.Contains(out, []byte(" "+vip+"/")) {
			return i
		}
	}
	return 0
}

// shortConn is one connect, one byte each way, close. The web backend
// answers with the last octet of the relay box it saw (1 or 2).
func (w *haWorld) shortConn() (box int, err error) {
	var c net.Conn
	err = w.inNS("cl", func() error {
		var err error
		c, err = net.DialTimeout("tcp", net.JoinHostPort(vip, strconv.Itoa(webPort)), 500*time.Millisecond)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte{'?'}); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return 0, err
	}
	return int(b[0]), nil
}

// serveVenue starts the backends on the venue LAN: the web answer server,
// a UDP echo and vsftpd serving one file; it returns that file's SHA-256.
func (w *haWorld) serveVenue() [32]byte {
	w.t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := w.inNS("ve", func() error {
		var err error
		if ln, err = net.Listen("tcp", net.JoinHostPort(venueAddr, strconv.Itoa(webPort))); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", net.JoinHostPort(venueAddr, strconv.Itoa(udpPort)))
		return err
	})
	if err != nil {
		w.t.Fatalf("venue backends: %v", err)
	}
	w.t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ip := c.RemoteAddr().(*net.TCPAddr).IP.To4()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					// A one-byte probe gets the box; longer writes are echoed.
					out := buf[:n]
					if n == 1 && buf[0] == '?' {
						out = []byte{ip[3]}
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()

	root := filepath.Join(w.dir, "ftproot")
	os.MkdirAll(root, 0o755)
	data := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	os.WriteFile(filepath.Join(root, "show.bin"), data, 0o644)
	conf := strings.Join([]string{
		"background=NO", "run_as_launching_user=YES", "seccomp_sandbox=NO",
		"anonymous_enable=YES", "local_enable=NO", "no_anon_password=YES",
		"anon_root=" + root, "pasv_enable=YES", "pasv_address=" + venueAddr,
		"pasv_addr_resolve=NO", "listen=YES", "listen_ipv6=NO",
		"listen_address=" + venueAddr, "listen_port=21", "syslog_enable=NO",
		"xferlog_enable=NO", "max_clients=0", "max_per_ip=0",
	}, "\n") + "\n"
	confPath := filepath.Join(w.dir, "vsftpd.conf")
	os.WriteFile(confPath, []byte(conf), 0o600)
	vsftpd, _ := exec.LookPath("vsftpd")
	w.start("ve", "vsftpd", vsftpd, confPath)
	return sha256.Sum256(data)
}

// ftpGet downloads the show file from the client through the virtual
// address (passive mode, data ports on the virtual address).
func (w *haWorld) ftpGet() ([32]byte, error) {
	out := filepath.Join(w.dir, "got.bin")
	os.Remove(out)
	url := fmt.Sprintf("ftp://%s:%d/show.bin", vip, ftpPort)
	cmd := exec.Command("ip", "netns", "exec", w.ns("cl"), "curl", "-sS", "--max-time", "10", "--ftp-pasv", "-o", out, url)
	if b, err := cmd.CombinedOutput(); err != nil {
		return [32]byte{}, fmt.Errorf("curl %s: %v: %s", url, err, b)
	}
	b, err := os.ReadFile(out)
	return sha256.Sum256(b), err
}

// udpEcho sends n sequenced datagrams from the client and counts the
// echoes that came back within a second of the last.
func (w *haWorld) udpEcho(n int) (int, error) {
	var c net.Conn
	if err := w.inNS("cl", func() error {
		var err error
		c, err = net.Dial("udp", net.JoinHostPort(vip, strconv.Itoa(udpPort)))
		return err
	}); err != nil {
		return 0, err
	}
	defer c.Close()
	seen := map[uint32]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			c.SetReadDeadline(time.Now().Add(time.Second))
			m, err := c.Read(buf)
			if err != nil {
				return
			}
			if m == 4 {
				seen[uint32(buf[0])<<24|uint32(buf[1])<<16|uint32(buf[2])<<8|uint32(buf[3])] = true
			}
		}
	}()
	for i := range n {
		c.Write([]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
		time.Sleep(2 * time.Millisecond) // pacing, not synchronisation
	}
	<-done
	return len(seen), nil
}

// waitServedBy polls with short connections until box answers, within
// limit; it returns how long that took and how many attempts failed.
func (w *haWorld) waitServedBy(box int, limit time.Duration) (time.Duration, int, error) {
	start := time.Now()
	failed := 0
	for time.Since(start) < limit {
		got, err := w.shortConn()
		if err == nil && got == box {
			return time.Since(start), failed, nil
		}
		if err != nil {
			failed++
		}
		time.Sleep(20 * time.Millisecond) // the probe rate of a client retrying
	}
	return time.Since(start), failed, fmt.Errorf("box %d did not serve %s:%d within %v", box, vip, webPort, limit)
}

func TestKeepalivedFailover(t *testing.T) {
	needTools(t, "ip", "keepalived", "vsftpd", "curl")
	w := &haWorld{t: t, prefix: fmt.Sprintf("rha%d", os.Getpid()%100000), dir: t.TempDir()}
	if err := exec.Command("ip", "netns", "add", w.ns("probe")).Run(); err != nil {
		t.Skipf("cannot create network namespaces here: %v", err)
	}
	exec.Command("ip", "netns", "del", w.ns("probe")).Run()
	os.Chmod(w.dir, 0o755) // vsftpd and keepalived's scripts read from it
	for _, s := range []string{"check_relay.sh", "notify.sh"} {
		b, err := os.ReadFile(filepath.Join("keepalived", s))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(w.dir, s), b, 0o755)
	}
	w.relay = filepath.Join(w.dir, "relay")
	if out, err := exec.Command("go", "build", "-o", w.relay, "../cmd/relay").CombinedOutput(); err != nil {
		t.Fatalf("build relay: %v: %s", err, out)
	}
	cfg := fmt.Sprintf(relayYAML, vip, webPort, venueAddr, ftpPort, udpPort)
	os.WriteFile(filepath.Join(w.dir, "relay.yaml"), []byte(cfg), 0o644)

	w.build()
	sum := w.serveVenue()
	master := w.startRelay(1)
	w.startRelay(2)
	w.startKeepalived(1)
	w.startKeepalived(2)

	if _, _, err := w.waitServedBy(1, 15*time.Second); err != nil {
		t.Fatalf("the MASTER never served: %v", err)
	}
	if got := w.holder(); got != 1 {
		t.Fatalf("virtual address on box %d, want the MASTER (1)", got)
	}
	if got, err := w.ftpGet(); err != nil || got != sum {
		t.Fatalf("FTP through the MASTER: %v (sha256 match %v)", err, got == sum)
	}

	var failovers, takebacks []time.Duration
	for kill := 1; kill <= haKills(); kill++ {
		// A stream of short connections runs through the kill; it counts
		// what a retrying client would see fail.
		var ok, failed atomic.Int64
		stop := make(chan struct{})
		var streamDone sync.WaitGroup
		streamDone.Add(1)
		go func() {
			defer streamDone.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := w.shortConn(); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
		// A long transfer through the MASTER: established connections on
		// the failed box are lost with it (userspace proxy); the test
		// records what happened to it.
		var long net.Conn
		w.inNS("cl", func() error {
			var err error
			long, err = net.DialTimeout("tcp", net.JoinHostPort(vip, strconv.Itoa(webPort)), time.Second)
			return err
		})

		t0 := time.Now()
		w.kill("relay1", master)
		_, _, err := w.waitServedBy(2, 10*time.Second)
		if err != nil {
			close(stop)
			streamDone.Wait()
			t.Fatalf("kill %d: failover: %v", kill, err)
		}
		failover := time.Since(t0)
		failovers = append(failovers, failover)
		failedInFailover := failed.Load()
		if long != nil {
			long.SetDeadline(time.Now().Add(time.Second))
			_, werr := long.Write(bytes.Repeat([]byte{'x'}, 4096))
			buf := make([]byte, 4096)
			_, rerr := long.Read(buf)
			t.Logf("kill %d: the long transfer on the failed box after failover: write %v, read %v", kill, werr, rerr)
			long.Close()
		}

		if got := w.holder(); got != 2 {
			t.Errorf("kill %d: virtual address on box %d after failover, want 2", kill, got)
		}
		if got, err := w.ftpGet(); err != nil || got != sum {
			t.Errorf("kill %d: FTP passive through the BACKUP: %v (sha256 match %v)", kill, err, got == sum)
		}
		// The stream opens a new session on the BACKUP. On this shared
		// 2-core machine a busy moment has cost a fifth of the first 200
		// datagrams (HA_KILLS=5: 158, then 200 each time); half is the floor
		// that still tells a working BACKUP from one that drops the stream.
		n, err := w.udpEcho(200)
		if err != nil || n < 100 {
			t.Errorf("kill %d: UDP through the BACKUP: %d of 200 echoed (%v)", kill, n, err)
		}
		t.Logf("kill %d: UDP through the BACKUP: %d of 200 datagrams echoed", kill, n)

		// The MASTER's relay comes back; keepalived's preempt gives it
		// the address again once its check passes twice (rise 2).
		t1 := time.Now()
		master = w.startRelay(1)
		if _, _, err := w.waitServedBy(1, 15*time.Second); err != nil {
			close(stop)
			streamDone.Wait()
			t.Fatalf("kill %d: take back: %v", kill, err)
		}
		takebacks = append(takebacks, time.Since(t1))
		close(stop)
		streamDone.Wait()
		t.Logf("kill %d: failover %v (%d short connections failed meanwhile), take back %v (%d failed meanwhile); %d ok in the cycle",
			kill, failover.Round(time.Millisecond), failedInFailover, takebacks[len(takebacks)-1].Round(time.Millisecond),
			failed.Load()-failedInFailover, ok.Load())
		if failover > 3*time.Second {
			t.Errorf("kill %d: failover took %v, want under 3 s with advert_int 1", kill, failover)
		}
	}
	slices.Sort(failovers)
	slices.Sort(takebacks)
	t.Logf("failover median %v over %d kills (min %v, max %v); take back median %v",
		failovers[len(failovers)/2].Round(time.Millisecond), len(failovers),
		failovers[0].Round(time.Millisecond), failovers[len(failovers)-1].Round(time.Millisecond),
		takebacks[len(takebacks)/2].Round(time.Millisecond))
}
