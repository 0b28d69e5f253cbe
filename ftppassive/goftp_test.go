package ftppassive

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pion/transport/v3/test"
	server "goftp.io/server/v2"
	"goftp.io/server/v2/driver/file"
)

// startGoFTP runs a goftp.io server on 127.0.0.1:0 serving root, user "u",
// password "p". It advertises 127.0.0.77 in its 227 replies, which is not
// where it listens for control; the relay must dial the control address.
func startGoFTP(t *testing.T, root string) string {
	t.Helper()
	drv, err := file.NewDriver(root)
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLoopback(t)
	srv, err := server.NewServer(&server.Options{
		Driver:   drv,
		Auth:     &server.SimpleAuth{Name: "u", Password: "p"},
		Perm:     server.NewSimplePerm("u", "u"),
		Logger:   &server.DiscardLogger{},
		Hostname: "127.0.0.1",
		Port:     ln.Addr().(*net.TCPAddr).Port,
		PublicIP: "127.0.0.77",
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

func dialFTP(t *testing.T, addr string, epsv bool) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(5*time.Second), ftp.DialWithDisabledEPSV(!epsv))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	if err := c.Login("u", "p"); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// TestGoFTPTransfers moves files both ways in PASV and EPSV through the
// relay to a Go FTP server and checks every byte.
func TestGoFTPTransfers(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	root := t.TempDir()
	down, downSum := randomBytes(t, 3<<20+17)
	if err := os.WriteFile(filepath.Join(root, "down.bin"), down, 0o644); err != nil {
		t.Fatal(err)
	}
	w := startProxy(t, Config{Upstreams: [][]string{{startGoFTP(t, root)}}, DataPorts: [2]uint16{31000, 31099}})

	for _, mode := range []struct {
		name string
		epsv bool
	}{{"PASV", false}, {"EPSV", true}} {
		t.Run(mode.name, func(t *testing.T) {
			c := dialFTP(t, w.addr, mode.epsv)
			defer c.Quit()

			r, err := c.Retr("down.bin")
			if err != nil {
				t.Fatalf("RETR: %v", err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || sha256Hex(got) != downSum {
				t.Fatalf("download: %d bytes, err %v; sha256 mismatch=%v", len(got), err, sha256Hex(got) != downSum)
			}

			up, upSum := randomBytes(t, 1<<20+3)
			name := "up-" + mode.name + ".bin"
			if err := c.Stor(name, bytes.NewReader(up)); err != nil {
				t.Fatalf("STOR: %v", err)
			}
			stored, err := os.ReadFile(filepath.Join(root, name))
			if err != nil || sha256Hex(stored) != upSum {
				t.Fatalf("upload: %d bytes stored, err %v", len(stored), err)
			}

			entries, err := c.NameList(".")
			if err != nil {
				t.Fatalf("NLST: %v", err)
			}
			if !slices.Contains(entries, "down.bin") || !slices.Contains(entries, name) {
				t.Fatalf("NLST = %q", entries)
			}
		})
	}
	st := w.proxy.Stats()
	if got := st.DataOpened.Load(); got != 6 {
		t.Errorf("DataOpened = %d, want 6 (3 per mode)", got)
	}
	if got := st.DataBytesToClient.Load(); got < 2*uint64(len(down)) {
		t.Errorf("DataBytesToClient = %d, want >= %d", got, 2*len(down))
	}
	if got := st.DataBytesToUpstream.Load(); got != 2*(1<<20+3) {
		t.Errorf("DataBytesToUpstream = %d, want %d", got, 2*(1<<20+3))
	}
	if got := st.Sessions.Load(); got != 2 {
		t.Errorf("Sessions = %d, want 2", got)
	}
}

// TestUpstreamUnreachable: the client gets a 421 and a clean close.
func TestUpstreamUnreachable(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	ln := listenLoopback(t)
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	w := startProxy(t, Config{Upstreams: [][]string{{dead}}, ConnectTimeout: time.Second})

	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (want a clean EOF after the reply)", err)
	}
	if !bytes.HasPrefix(got, []byte("421 ")) || !bytes.HasSuffix(got, []byte("\r\n")) {
		t.Fatalf("got %q, want one 421 line", got)
	}
	if n := w.proxy.Stats().UpstreamFailed.Load(); n != 1 {
		t.Errorf("UpstreamFailed = %d, want 1", n)
	}
	if line := w.logs.Wait(t, "ftp server unreachable", dead); strings.Count(line, dead) != 1 {
		t.Errorf("the unreachable server's address is not named once: %s", line)
	}

	// The jlaffaye client reports it as an error, not a hang.
	if _, err := ftp.Dial(w.addr, ftp.DialWithTimeout(5*time.Second)); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("ftp.Dial through a relay with no server: err = %v, want the 421", err)
	}
}
