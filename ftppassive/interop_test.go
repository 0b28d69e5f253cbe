package ftppassive

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	testworld "github.com/edgerelay/relay/internal/world"
)

// Test data ranges lie below the kernel's ephemeral range (32768-60999 by
// default), as production ranges should: ports the kernel hands to
// outgoing connections come in runs and would collide with the pool.
var interopRange = [2]uint16{31200, 31299}

// curlModes are curl's four ways to open a data connection. PASV keeps the
// server's address (--no-ftp-skip-pasv-ip): it must be the relay's.
var curlModes = []struct {
	name string
	args []string
}{
	{"PASV", []string{"--disable-epsv", "--no-ftp-skip-pasv-ip"}},
	{"EPSV", []string{"--ftp-pasv"}},
	{"PORT", []string{"--ftp-port", "127.0.0.1", "--disable-eprt"}},
	{"EPRT", []string{"--ftp-port", "127.0.0.1"}},
}

// TestVsftpdCurl: curl downloads and uploads through the relay to vsftpd in
// every data mode, and lists a directory; every file is checked by SHA-256.
func TestVsftpdCurl(t *testing.T) {
	curl := needTool(t, "curl")
	v := startVsftpd(t, vsftpdOptions{})
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: interopRange})
	down, downSum := randomBytes(t, 2<<20+5)
	v.put(t, "down.bin", down)
	dir := t.TempDir()

	// Direct, the PASV reply would send curl to 127.0.0.77, where nothing
	// listens: the relay's rewrite is what makes the test pass.
	if out, err := run(t, 20*time.Second, curl, "-sS", "--disable-epsv", "--no-ftp-skip-pasv-ip",
		"-o", os.DevNull, "ftp://"+v.addr+"/down.bin"); err == nil {
		t.Fatalf("direct PASV download worked; vsftpd's pasv_address proves nothing: %s", out)
	}

	for i, m := range curlModes {
		t.Run(m.name, func(t *testing.T) {
			base := []string{"-sS", "--max-time", "20"}
			out := filepath.Join(dir, m.name+".down")
			args := append(append(base, m.args...), "-o", out, "ftp://"+w.addr+"/down.bin")
			if o, err := run(t, 30*time.Second, curl, args...); err != nil {
				t.Fatalf("curl download: %v: %s", err, o)
			}
			if got, _ := os.ReadFile(out); sha256Hex(got) != downSum {
				t.Fatalf("download: %d bytes, sha256 mismatch", len(got))
			}

			up, upSum := randomBytes(t, 1<<20+int(i))
			src := filepath.Join(dir, m.name+".up")
			os.WriteFile(src, up, 0o644)
			args = append(append(base, m.args...), "-T", src, "ftp://"+w.addr+"/upload/"+m.name+".bin")
			if o, err := run(t, 30*time.Second, curl, args...); err != nil {
				t.Fatalf("curl upload: %v: %s", err, o)
			}
			if got, _ := os.ReadFile(filepath.Join(v.root, "upload", m.name+".bin")); sha256Hex(got) != upSum {
				t.Fatalf("upload: %d bytes arrived, sha256 mismatch", len(got))
			}

			args = append(append(base, m.args...), "ftp://"+w.addr+"/")
			o, err := run(t, 30*time.Second, curl, args...)
			if err != nil || !strings.Contains(o, "down.bin") || !strings.Contains(o, "upload") {
				t.Fatalf("curl LIST: %v: %q", err, o)
			}
		})
	}
	if n := w.proxy.Stats().DataOpened.Load(); n != 12 {
		t.Errorf("DataOpened = %d, want 12 (3 per mode)", n)
	}
	if n := w.proxy.Stats().DataFailed.Load(); n != 0 {
		t.Errorf("DataFailed = %d, want 0", n)
	}
}

// TestVsftpdLftpMirror: lftp mirrors a 100-file tree through the relay.
func TestVsftpdLftpMirror(t *testing.T) {
	lftp := needTool(t, "lftp")
	v := startVsftpd(t, vsftpdOptions{})
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: interopRange})
	sums := map[string]string{}
	for i := range 100 {
		name := fmt.Sprintf("mirror/d%d/f%03d.bin", i%4, i)
		data, sum := randomBytes(t, 1+i*211)
		v.put(t, name, data)
		sums[name] = sum
	}
	local := t.TempDir()
	script := strings.Join([]string{
		"set net:max-retries 1", "set net:timeout 10", "set net:reconnect-interval-base 1",
		"set ftp:passive-mode on", "set ftp:prefer-epsv no", "set ftp:ssl-allow no",
		"set cmd:fail-exit yes",
		"open -u anonymous,x ftp://" + w.addr,
		"mirror --no-perms mirror " + filepath.Join(local, "mirror"),
	}, "; ")
	if out, err := run(t, 60*time.Second, lftp, "-c", script); err != nil {
		t.Fatalf("lftp mirror: %v: %s", err, out)
	}
	for name, sum := range sums {
		got, err := os.ReadFile(filepath.Join(local, name))
		if err != nil || sha256Hex(got) != sum {
			t.Fatalf("%s: %d bytes, err %v, sha256 match %v", name, len(got), err, sha256Hex(got) == sum)
		}
	}
	// 100 files plus one listing per directory (mirror/ and its four).
	if n := w.proxy.Stats().DataOpened.Load(); n < 105 {
		t.Errorf("DataOpened = %d, want >= 105", n)
	}
}

// TestVsftpdDataTheft: a connection to a client's passive port from
// another address is closed at once and counted; the client still gets its
// file.
func TestVsftpdDataTheft(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	v := startVsftpd(t, vsftpdOptions{})
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: interopRange})
	data, sum := randomBytes(t, 300<<10)
	v.put(t, "secret.bin", data)

	f := dialRaw(t, w.addr)
	ap := f.pasv()
	// The relay accepts and resets at once; the thief sees the reset
	// either while connecting or on its first read, and never a byte.
	if thief, err := dialFrom(t, "127.0.0.2", ap); err == nil {
		thief.SetReadDeadline(time.Now().Add(stepTimeout))
		if n, err := io.Copy(io.Discard, thief); n != 0 {
			t.Fatalf("the thief read %d bytes (err %v)", n, err)
		}
		thief.Close()
	}
	w.logs.Wait(t, "data connection from a foreign address refused", "127.0.0.2")
	if n := w.proxy.Stats().DataTheftAttempts.Load(); n != 1 {
		t.Errorf("DataTheftAttempts = %d, want 1", n)
	}

	d, err := dialFrom(t, "127.0.0.1", ap)
	if err != nil {
		t.Fatalf("the rightful client cannot connect after the attempt: %v", err)
	}
	if got := f.retr("secret.bin", d); sha256Hex(got) != sum {
		t.Fatalf("client got %d bytes, sha256 mismatch", len(got))
	}
	f.expect("QUIT", 221)
}

// TestVsftpdBounce: PORT/EPRT naming another host or a privileged port is
// refused by the relay; vsftpd never hears of it and nothing connects.
func TestVsftpdBounce(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	v := startVsftpd(t, vsftpdOptions{})
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: interopRange})
	v.put(t, "f.bin", []byte("payload"))
	canary, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer canary.Close()
	cp := canary.Addr().(*net.TCPAddr).Port

	f := dialRaw(t, w.addr)
	f.expect(fmt.Sprintf("PORT 127,0,0,2,%d,%d", cp>>8, cp&0xFF), 500)
	f.expect(fmt.Sprintf("EPRT |1|127.0.0.2|%d|", cp), 500)
	f.expect("PORT 127,0,0,1,0,22", 504)
	f.expect("EPRT |1|127.0.0.1|25|", 504)
	// vsftpd answers RETR without any data address; had a PORT got
	// through, it would have connected before this reply.
	f.expect("RETR f.bin", 425, 503, 500)
	f.expect("QUIT", 221)

	canary.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if c, err := canary.Accept(); err == nil {
		c.Close()
		t.Fatal("something connected to the bounce target")
	}
	if n := w.proxy.Stats().BouncesRefused.Load(); n != 4 {
		t.Errorf("BouncesRefused = %d, want 4", n)
	}
	if n := w.proxy.Stats().DataPortsInUse.Load(); n != 0 {
		t.Errorf("DataPortsInUse = %d, want 0", n)
	}
	if log := v.protocolLog(); strings.Contains(log, `"PORT`) || strings.Contains(log, `"EPRT`) {
		t.Errorf("vsftpd saw a PORT/EPRT:\n%s", log)
	}
}

// TestVsftpdExhaustion: with a one-port range, a second session's PASV
// gets 425 and that session goes on; once the port is free it works.
func TestVsftpdExhaustion(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	v := startVsftpd(t, vsftpdOptions{})
	p := uint16(freePort(t))
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: [2]uint16{p, p}})
	data, sum := randomBytes(t, 100<<10)
	v.put(t, "f.bin", data)

	a := dialRaw(t, w.addr)
	if ap := a.pasv(); ap.Port() != p {
		t.Fatalf("PASV gave port %d, want the only one, %d", ap.Port(), p)
	}
	b := dialRaw(t, w.addr)
	if code, text := b.cmd("PASV"); code != 425 || !strings.Contains(text, "no free data port") {
		t.Fatalf("second session's PASV: %q, want 425", text)
	}
	b.expect("NOOP", 200)
	if n := w.proxy.Stats().DataPortsInUse.Load(); n != 1 {
		t.Errorf("DataPortsInUse = %d, want 1", n)
	}
	a.expect("QUIT", 221) // its unused port goes back to the pool
	testworld.Eventually(w.t, "the port to be released", func() bool { return w.proxy.Stats().DataPortsInUse.Load() == 0 })

	ap := b.pasv()
	d, err := dialFrom(t, "127.0.0.1", ap)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.retr("f.bin", d); sha256Hex(got) != sum {
		t.Fatalf("download after exhaustion: %d bytes, sha256 mismatch", len(got))
	}
}

// TestVsftpdTransferOutlivesIdleTimeout: transfers that run four times
// longer than the idle timeout keep their control connection. The slow
// side is the sender each time (vsftpd's anon_max_rate for the download,
// curl's --limit-rate for the upload), so bytes trickle through the relay
// the whole time instead of piling up in kernel buffers behind a slow
// reader.
func TestVsftpdTransferOutlivesIdleTimeout(t *testing.T) {
	curl := needTool(t, "curl")
	v := startVsftpd(t, vsftpdOptions{extraLines: []string{"anon_max_rate=524288"}})
	const idle = 500 * time.Millisecond
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: interopRange, IdleTimeout: idle})
	dir := t.TempDir()
	data, sum := randomBytes(t, 1<<20)
	v.put(t, "slow.bin", data)

	for _, tc := range []struct {
		name string
		args []string
		got  string
	}{
		// 1 MiB at 512 KiB/s from vsftpd: about 2 s.
		{"download", []string{"-o", filepath.Join(dir, "down"), "ftp://" + w.addr + "/slow.bin"}, filepath.Join(dir, "down")},
		// 512 KiB at 256 KiB/s from curl: about 2 s.
		{"upload", []string{"--limit-rate", "256K", "-T", filepath.Join(dir, "half"), "ftp://" + w.addr + "/upload/half"},
			filepath.Join(v.root, "upload", "half")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := sum
			if tc.name == "upload" {
				os.WriteFile(filepath.Join(dir, "half"), data[:512<<10], 0o644)
				want = sha256Hex(data[:512<<10])
			}
			start := time.Now()
			if o, err := run(t, 30*time.Second, curl, append([]string{"-sS"}, tc.args...)...); err != nil {
				t.Fatalf("curl: %v: %s", err, o)
			}
			if el := time.Since(start); el < 2*idle {
				t.Fatalf("transfer took %v; too fast to outlive the idle timeout", el)
			}
			if got, _ := os.ReadFile(tc.got); sha256Hex(got) != want {
				t.Fatalf("got %d bytes, sha256 mismatch", len(got))
			}
		})
	}
	if strings.Contains(w.logs.String(), `"end":"idle"`) {
		t.Fatalf("a connection ended idle during a transfer:\n%s", w.logs.String())
	}

	// Without a transfer the same control connection does time out.
	f := dialRaw(t, w.addr)
	if code, text := f.reply(); code != 421 || !strings.Contains(text, "Idle timeout") {
		t.Fatalf("idle control connection got %q, want 421", text)
	}
	f.c.Close()
	w.logs.Wait(t, `"end":"idle"`)
}

// TestVsftpdIPv6: EPSV and EPRT (|2|) with an IPv6 client and server.
func TestVsftpdIPv6(t *testing.T) {
	curl := needTool(t, "curl")
	testworld.NeedIPv6Loopback(t)
	v := startVsftpd(t, vsftpdOptions{ipv6: true})
	w := startProxy(t, Config{Listen: []string{"[::1]:0"}, Upstreams: [][]string{{v.addr}}, DataPorts: interopRange})
	data, sum := randomBytes(t, 1<<20)
	v.put(t, "v6.bin", data)
	dir := t.TempDir()
	for _, m := range []struct {
		name string
		args []string
	}{{"EPSV", nil}, {"EPRT", []string{"--ftp-port", "::1"}}} {
		t.Run(m.name, func(t *testing.T) {
			out := filepath.Join(dir, m.name)
			args := append([]string{"-sS", "-g", "--max-time", "20", "-o", out}, m.args...)
			args = append(args, "ftp://"+w.addr+"/v6.bin")
			if o, err := run(t, 30*time.Second, curl, args...); err != nil {
				t.Fatalf("curl: %v: %s", err, o)
			}
			if got, _ := os.ReadFile(out); sha256Hex(got) != sum {
				t.Fatalf("got %d bytes, sha256 mismatch", len(got))
			}
			args = append([]string{"-sS", "-g", "--max-time", "20", "-T", out}, m.args...)
			args = append(args, "ftp://"+w.addr+"/upload/"+m.name)
			if o, err := run(t, 30*time.Second, curl, args...); err != nil {
				t.Fatalf("curl upload: %v: %s", err, o)
			}
			if got, _ := os.ReadFile(filepath.Join(v.root, "upload", m.name)); sha256Hex(got) != sum {
				t.Fatalf("upload: %d bytes, sha256 mismatch", len(got))
			}
		})
	}
	if n := w.proxy.Stats().DataOpened.Load(); n != 4 {
		t.Errorf("DataOpened = %d, want 4", n)
	}
}
