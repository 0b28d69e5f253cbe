package ftppassive

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	testworld "github.com/edgerelay/relay/internal/world"
)

// The interop tests run real peers: vsftpd as the server, curl and lftp as
// clients. `make test` installs them (.ci/install-deps); where they cannot
// be installed the tests skip and say so.

// needTool returns the path of a peer binary or skips the test.
func needTool(t testing.TB, name string) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/" + name, "/usr/bin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Skipf("%s is not installed (make test installs it via .ci/install-deps; as non-root it cannot)", name)
	return ""
}

// vsftpd is one real vsftpd in standalone mode, in the foreground.
type vsftpd struct {
	addr string // control address
	root string // anonymous root: files to download; upload/ is writable
	log  string // vsftpd's protocol log
}

// vsftpdOptions change the default test configuration.
type vsftpdOptions struct {
	ipv6       bool   // listen on [::1] instead of 127.0.0.1
	pasvAddr   string // advertised in 227; default 127.0.0.77 (nothing listens there)
	extraLines []string
}

// startVsftpd runs vsftpd for the test. It advertises pasvAddr in its 227
// replies: vsftpd listens for passive data on the control connection's
// address only, so a client that connected to the advertised address would
// be refused; a passing PASV test proves the relay rewrote the reply.
//
// vsftpd runs with run_as_launching_user=YES: no privilege separation and
// no chroot, which works both as root (CI) and as an ordinary user.
func startVsftpd(t testing.TB, o vsftpdOptions) *vsftpd {
	t.Helper()
	bin := needTool(t, "vsftpd")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "upload"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Writable by whoever vsftpd runs as; TempDir is 0700 for us only.
	os.Chmod(filepath.Join(root, "upload"), 0o777)
	host := "127.0.0.1"
	if o.ipv6 {
		host = "::1"
	}
	port := freePort(t)
	if o.pasvAddr == "" {
		o.pasvAddr = "127.0.0.77"
	}
	v := &vsftpd{addr: net.JoinHostPort(host, fmt.Sprint(port)), root: root, log: filepath.Join(dir, "vsftpd.log")}
	conf := vsftpdConf(o, root, v.log, port)
	confPath := filepath.Join(dir, "vsftpd.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, confPath)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// Its own process group: vsftpd forks a child per session, and the
	// cleanup ends the whole group it started, nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vsftpd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		<-exited
		if t.Failed() {
			log := v.protocolLog()
			t.Logf("vsftpd log (last 3000 bytes):\n%s%s", log[max(0, len(log)-3000):], stderr.String())
		}
	})
	// vsftpd says nothing when it is ready; it is ready when it accepts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", v.addr, time.Second)
		if err == nil {
			// Read its greeting so the probe session ends cleanly.
			bufio.NewReader(c).ReadString('\n')
			c.Close()
			return v
		}
		select {
		case err := <-exited:
			t.Fatalf("vsftpd exited: %v: %s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("vsftpd did not accept on %s: %v: %s", v.addr, err, stderr.String())
		}
	}
}

// vsftpdConf is the configuration for startVsftpd, one directive a line.
func vsftpdConf(o vsftpdOptions, root, log string, port int) []string {
	conf := []string{
		"background=NO",
		"run_as_launching_user=YES",
		"seccomp_sandbox=NO",
		"anonymous_enable=YES",
		"local_enable=NO",
		"no_anon_password=YES",
		"anon_root=" + root,
		"write_enable=YES",
		"anon_upload_enable=YES",
		"anon_mkdir_write_enable=YES",
		"anon_umask=022",
		"pasv_enable=YES",
		"port_enable=YES",
		"pasv_address=" + o.pasvAddr,
		"pasv_addr_resolve=NO",
		"max_clients=0",
		"max_per_ip=0",
		"xferlog_enable=YES",
		"xferlog_std_format=NO",
		"log_ftp_protocol=YES",
		"syslog_enable=NO",
		"dual_log_enable=NO",
		"vsftpd_log_file=" + log,
		"dirmessage_enable=NO",
		"use_localtime=NO",
	}
	if o.ipv6 {
		conf = append(conf, "listen=NO", "listen_ipv6=YES", "listen_address6=::1")
	} else {
		conf = append(conf, "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1")
	}
	conf = append(conf, fmt.Sprintf("listen_port=%d", port))
	conf = append(conf, o.extraLines...)
	return conf
}

// freePort returns a loopback port reserved for this test
// (world.ReserveTCPPort), free for IPv4 and IPv6 alike. A port that a
// listener on port 0 was given and closed again is in the ephemeral range,
// where the next socket of any test may get it: TestVsftpdExhaustion failed
// once under a loaded make test when the proxy's own listener was given
// vsftpd's port.
func freePort(t testing.TB) int {
	t.Helper()
	return testworld.ReserveTCPPort(t)
}

// put writes a file under the vsftpd root, world-readable (vsftpd serves
// anonymous users world-readable files only).
func (v *vsftpd) put(t testing.TB, name string, data []byte) {
	t.Helper()
	p := filepath.Join(v.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// protocolLog returns what vsftpd logged about the FTP commands it got.
func (v *vsftpd) protocolLog() string {
	b, _ := os.ReadFile(v.log)
	return string(b)
}
