package ftppassive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/rs/zerolog"
)

// TestVsftpdConcurrentSessions: 200 sessions open at once through the
// relay, then all download a file at the same moment (half in PASV, half in
// EPSV), every file intact.
//
// Logins are let in 16 at a time: vsftpd's standalone listener has a
// backlog of 32 and forks per connection, so a burst of 200 SYNs would
// measure vsftpd's accept queue, not the relay.
func TestVsftpdConcurrentSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("200 vsftpd sessions; skipped with -short")
	}
	v := startVsftpd(t, vsftpdOptions{})
	w := startProxy(t, Config{Upstreams: [][]string{{v.addr}}, DataPorts: [2]uint16{31300, 31699}})
	const sessions, files = 200, 10
	var sums [files]string
	for i := range files {
		data, sum := randomBytes(t, 64<<10+i)
		v.put(t, fmt.Sprintf("c%d.bin", i), data)
		sums[i] = sum
	}
	logins := make(chan struct{}, 16)
	var loggedIn, done sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, sessions)
	for i := range sessions {
		loggedIn.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			logins <- struct{}{}
			c, err := login(w.addr, i%2 == 0)
			<-logins
			loggedIn.Done()
			if err != nil {
				errs <- err
				return
			}
			defer c.Quit()
			<-start
			errs <- fetch(c, fmt.Sprintf("c%d.bin", i%files), sums[i%files])
		}()
	}
	loggedIn.Wait()
	if n := w.proxy.Stats().Control.Active.Load(); n != sessions {
		t.Errorf("%d control connections open before the downloads, want %d", n, sessions)
	}
	close(start)
	done.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed <= 5 {
				t.Error(err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d sessions failed", failed, sessions)
	}
	if n := w.proxy.Stats().DataOpened.Load(); n != sessions {
		t.Errorf("DataOpened = %d, want %d", n, sessions)
	}
}

func login(addr string, epsv bool) (*ftp.ServerConn, error) {
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(20*time.Second), ftp.DialWithDisabledEPSV(!epsv))
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if err := c.Login("anonymous", "x"); err != nil {
		c.Quit()
		return nil, fmt.Errorf("login: %w", err)
	}
	return c, nil
}

// fetch downloads name and checks it.
func fetch(c *ftp.ServerConn, name, sum string) error {
	r, err := c.Retr(name)
	if err != nil {
		return fmt.Errorf("RETR %s: %w", name, err)
	}
	got, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("RETR %s: %w", name, err)
	}
	if sha256Hex(got) != sum {
		return fmt.Errorf("RETR %s: %d bytes, sha256 mismatch", name, len(got))
	}
	return nil
}

// benchTarget starts vsftpd and, for "relay", a quiet relay in front of it,
// and returns the address a client should use. "relay-far" is a relay
// whose every dial to the server takes 1 ms longer, as if the server were
// a LAN hop away.
func benchTarget(b *testing.B, via string, files map[string][]byte) string {
	b.Helper()
	v := startVsftpd(b, vsftpdOptions{})
	for name, data := range files {
		v.put(b, name, data)
	}
	if via == "direct" {
		return v.addr
	}
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if via == "relay-far" {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			time.Sleep(time.Millisecond)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	p, err := Listen(Config{
		Name:      "bench",
		Listen:    []string{"127.0.0.1:0"},
		Upstreams: [][]string{{v.addr}},
		DataPorts: [2]uint16{31700, 31999},
		Dial:      dial,
		Log:       zerolog.Nop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve() }()
	b.Cleanup(func() {
		p.Close()
		if err := <-served; !errors.Is(err, ErrClosed) {
			b.Errorf("Serve: %v", err)
		}
	})
	return p.Addrs()[0].String()
}

func benchClient(b *testing.B, addr string) *ftp.ServerConn {
	b.Helper()
	// EPSV: direct to vsftpd, PASV would name its pasv_address.
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(20*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Login("anonymous", "x"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Quit() })
	return c
}

// BenchmarkDownloadLarge: one 256 MiB file per iteration; MB/s is the
// throughput (go test -bench DownloadLarge -benchtime 5x ./ftppassive).
func BenchmarkDownloadLarge(b *testing.B) {
	const size = 256 << 20
	data := bytes.Repeat([]byte("relay-ftp-bench!"), size/16)
	for _, via := range []string{"direct", "relay"} {
		b.Run(via, func(b *testing.B) {
			c := benchClient(b, benchTarget(b, via, map[string][]byte{"large.bin": data}))
			b.SetBytes(size)
			for b.Loop() {
				r, err := c.Retr("large.bin")
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				r.Close()
				if err != nil || n != size {
					b.Fatalf("got %d bytes: %v", n, err)
				}
			}
		})
	}
}

// BenchmarkSmallFiles: one 4 KiB file per iteration over one control
// connection, each with its own data connection; reports transfers/s.
func BenchmarkSmallFiles(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 4<<10)
	for _, via := range []string{"direct", "relay"} {
		b.Run(via, func(b *testing.B) {
			c := benchClient(b, benchTarget(b, via, map[string][]byte{"small.bin": data}))
			start := time.Now()
			for b.Loop() {
				r, err := c.Retr("small.bin")
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				r.Close()
				if err != nil || n != int64(len(data)) {
					b.Fatalf("got %d bytes: %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "transfers/s")
		})
	}
}

// BenchmarkSmallFileSteps times each step of a 16 KiB passive download on
// a raw control connection and logs the mean per step in µs: EPSV until
// the 229, the client's data connect, RETR until the 150, the data, and the
// 226 after it (go test -run '^$' -bench SmallFileSteps -benchtime 1000x).
// It shows where the relay's extra time goes; the total is ns/op. In
// "relay-far" the client's data connect takes 1 ms longer too.
func BenchmarkSmallFileSteps(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 16<<10)
	for _, via := range []string{"direct", "relay", "relay-far"} {
		b.Run(via, func(b *testing.B) {
			addr := benchTarget(b, via, map[string][]byte{"small.bin": data})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			f := &stepClient{b: b, c: c, r: bufio.NewReader(c)}
			f.reply()
			f.cmd("USER anonymous")
			f.cmd("PASS x")
			f.cmd("TYPE I")
			host, _, _ := net.SplitHostPort(addr)
			var steps [5]time.Duration
			rounds := 0
			buf := make([]byte, 64<<10)
			for b.Loop() {
				rounds++
				t0 := time.Now()
				port, err := parse229(f.cmd("EPSV"))
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if via == "relay-far" {
					time.Sleep(time.Millisecond) // the client is as far as the server
				}
				d, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
				if err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if l := f.cmd("RETR small.bin"); !strings.HasPrefix(l, "150") {
					b.Fatal(l)
				}
				t3 := time.Now()
				n, err := io.CopyBuffer(io.Discard, d, buf)
				d.Close()
				if err != nil || n != int64(len(data)) {
					b.Fatalf("got %d bytes: %v", n, err)
				}
				t4 := time.Now()
				if l := f.reply(); !strings.HasPrefix(l, "226") {
					b.Fatal(l)
				}
				for i, d := range []time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), time.Since(t4)} {
					steps[i] += d
				}
			}
			us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(rounds) }
			b.Logf("µs per step: EPSV→229 %.0f, connect %.0f, RETR→150 %.0f, data %.0f, →226 %.0f",
				us(steps[0]), us(steps[1]), us(steps[2]), us(steps[3]), us(steps[4]))
		})
	}
}

// stepClient is the raw control connection of BenchmarkSmallFileSteps;
// every reply it reads is one line.
type stepClient struct {
	b *testing.B
	c net.Conn
	r *bufio.Reader
}

func (f *stepClient) reply() string {
	l, err := f.r.ReadString('\n')
	if err != nil {
		f.b.Fatal(err)
	}
	return l
}

func (f *stepClient) cmd(line string) string {
	if _, err := io.WriteString(f.c, line+"\r\n"); err != nil {
		f.b.Fatal(err)
	}
	return f.reply()
}
