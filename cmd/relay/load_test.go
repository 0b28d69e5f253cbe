package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// Fixtures of TestZeroLossOperations: backends that stream a known byte
// sequence in two halves with a gate between them (so a transfer is sure to
// span the operations under test), a minimal passive-mode FTP server doing
// the same on its data connections, and a sequenced UDP stream.

// gate holds the second half of every long transfer until opened.
type gate chan struct{}

// streamHalves writes world.Stream(seed, n) to w: the first half at once,
// the second once g opens, in 32 KiB writes.
func streamHalves(w io.Writer, seed uint64, n int64, g gate) error {
	r := world.Stream(seed, n)
	if _, err := io.CopyN(w, r, n/2); err != nil {
		return err
	}
	<-g
	_, err := io.CopyBuffer(w, r, make([]byte, 32<<10))
	return err
}

// parseRequest reads "N SEED" from a request line.
func parseRequest(line string) (n int64, seed uint64, err error) {
	f := strings.Fields(line)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("bad request %q", line)
	}
	if n, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return 0, 0, err
	}
	seed, err = strconv.ParseUint(f[1], 10, 64)
	return n, seed, err
}

// streamBackend answers "N SEED\n" with world.Stream(SEED, N) in gated
// halves, then closes. Raw and TCP listeners use it.
func streamBackend(g gate) func(net.Conn) {
	return func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		n, seed, err := parseRequest(line)
		if err != nil {
			return
		}
		_ = streamHalves(c, seed, n, g)
	}
}

// fetchStream asks addr for n bytes of seed and checks what arrives.
func fetchStream(addr string, n int64, seed uint64) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "%d %d\n", n, seed); err != nil {
		return err
	}
	return checkStream(c, n, seed)
}

func checkStream(r io.Reader, n int64, seed uint64) error {
	got, err := world.Hash(r)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", got.N, err)
	}
	if got != world.StreamSum(seed, n) {
		return fmt.Errorf("got %d bytes with another SHA-256, want %d intact", got.N, n)
	}
	return nil
}

// ftpBackend is a passive-mode FTP server: USER, PASS, TYPE, PASV,
// "RETR N-SEED" (world.Stream in gated halves), QUIT.
func ftpBackend(g gate) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		fmt.Fprint(c, "220 test ftp\r\n")
		var data net.Listener
		defer func() {
			if data != nil {
				data.Close()
			}
		}()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch strings.ToUpper(verb) {
			case "USER":
				fmt.Fprint(c, "331 password\r\n")
			case "PASS":
				fmt.Fprint(c, "230 in\r\n")
			case "TYPE":
				fmt.Fprint(c, "200 ok\r\n")
			case "PASV":
				if data, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					fmt.Fprint(c, "425 no\r\n")
					continue
				}
				p := data.Addr().(*net.TCPAddr).Port
				fmt.Fprintf(c, "227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n", p>>8, p&0xff)
			case "RETR":
				n, seed, err := parseRequest(strings.Replace(arg, "-", " ", 1))
				if err != nil || data == nil {
					fmt.Fprint(c, "550 no\r\n")
					continue
				}
				fmt.Fprint(c, "150 here\r\n")
				dc, err := data.Accept()
				if err != nil {
					return
				}
				err = streamHalves(dc, seed, n, g)
				dc.Close()
				data.Close()
				data = nil
				if err != nil {
					fmt.Fprint(c, "426 broken\r\n")
					continue
				}
				fmt.Fprint(c, "226 done\r\n")
			case "QUIT":
				fmt.Fprint(c, "221 bye\r\n")
				return
			default:
				fmt.Fprint(c, "502 no\r\n")
			}
		}
	}
}

// fetchFTP logs in through the relay, retrieves n bytes of seed over a
// passive data connection and checks them and the replies.
func fetchFTP(addr string, n int64, seed uint64) error {
	c, err := dialFTP(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	dataAddr, err := c.pasv()
	if err != nil {
		return err
	}
	if err := c.retr(dataAddr, n, seed, nil); err != nil {
		return err
	}
	return c.quit()
}

// ftpClient is the client side of ftpBackend's dialogue through the relay.
type ftpClient struct {
	net.Conn
	r *bufio.Reader
}

// dialFTP connects and logs in, up to TYPE I.
func dialFTP(addr string) (*ftpClient, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	f := &ftpClient{Conn: c, r: bufio.NewReader(c)}
	for _, s := range []struct{ send, want string }{{"", "220"}, {"USER x", "331"}, {"PASS x", "230"}, {"TYPE I", "200"}} {
		if _, err := f.cmd(s.send, s.want); err != nil {
			c.Close()
			return nil, err
		}
	}
	return f, nil
}

// cmd sends line (none if empty) and reads a reply that must start with
// code.
func (f *ftpClient) cmd(line, code string) (string, error) {
	if line != "" {
		fmt.Fprintf(f, "%s\r\n", line)
	}
	reply, err := f.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(reply, code) {
		return reply, fmt.Errorf("%s: want %s, got %q %v", line, code, reply, err)
	}
	return reply, nil
}

// pasv returns the relay's data address from its 227.
func (f *ftpClient) pasv() (string, error) {
	reply, err := f.cmd("PASV", "227")
	if err != nil {
		return "", err
	}
	return parse227(reply)
}

// retr connects to dataAddr, asks for n bytes of seed and checks them;
// started, when not nil, is closed once the data connection is up and the
// transfer asked for.
func (f *ftpClient) retr(dataAddr string, n int64, seed uint64, started chan<- struct{}) error {
	dc, err := net.DialTimeout("tcp", dataAddr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("data connection: %w", err)
	}
	defer dc.Close()
	if _, err := f.cmd(fmt.Sprintf("RETR %d-%d", n, seed), "150"); err != nil {
		return err
	}
	if started != nil {
		close(started)
	}
	if err := checkStream(dc, n, seed); err != nil {
		return fmt.Errorf("ftp data: %w", err)
	}
	_, err = f.cmd("", "226")
	return err
}

func (f *ftpClient) quit() error {
	_, err := f.cmd("QUIT", "221")
	return err
}

func parse227(line string) (string, error) {
	open, end := strings.IndexByte(line, '('), strings.IndexByte(line, ')')
	if open < 0 || end < open {
		return "", fmt.Errorf("bad 227 %q", line)
	}
	var h [6]int
	if _, err := fmt.Sscanf(line[open+1:end], "%d,%d,%d,%d,%d,%d", &h[0], &h[1], &h[2], &h[3], &h[4], &h[5]); err != nil {
		return "", fmt.Errorf("bad 227 %q: %w", line, err)
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", h[0], h[1], h[2], h[3], h[4]<<8|h[5]), nil
}

// udpEchoServer answers every datagram with itself.
func udpEchoServer(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

// udpStream sends sequence numbers to addr at a steady pace and records
// which came back, so loss is counted exactly.
type udpStream struct {
	conn *net.UDPConn
	to   netip.AddrPort
	mu   sync.Mutex // guards the following
	got  map[uint64]bool
	sent uint64
	// sentAt[seq] is when seq was sent, to place a lost one (lostRuns).
	sentAt  []time.Time
	lastGot time.Time // when the latest reply came
}

func newUDPStream(conn *net.UDPConn, to netip.AddrPort) *udpStream {
	s := &udpStream{conn: conn, to: to, got: make(map[uint64]bool)}
	go s.receive()
	return s
}

func (s *udpStream) receive() {
	buf := make([]byte, 64)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return
		}
		if n == 8 {
			s.mu.Lock()
			s.got[binary.BigEndian.Uint64(buf)] = true
			s.lastGot = time.Now()
			s.mu.Unlock()
		}
	}
}

// run sends one datagram per interval until stop closes (bounded by max).
func (s *udpStream) run(stop <-chan struct{}, interval time.Duration, max int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var b [8]byte
	for range max {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		seq := s.sent
		s.sent++
		s.sentAt = append(s.sentAt, time.Now())
		s.mu.Unlock()
		binary.BigEndian.PutUint64(b[:], seq)
		_, _ = s.conn.WriteToUDPAddrPort(b[:], s.to)
	}
}

// lost counts the sequence numbers in [from, to) that never came back.
func (s *udpStream) lost(from, to uint64) (lost uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for q := from; q < to; q++ {
		if !s.got[q] {
			lost++
		}
	}
	return lost
}

// settle waits until every datagram sent so far has come back, or none has
// for quiet: on a loaded machine the last replies can take longer than a
// fixed pause (a 200 ms one counted the stream's last 7 as lost, though the
// upstream had echoed them).
func (s *udpStream) settle(quiet time.Duration) {
	start := time.Now()
	for {
		s.mu.Lock()
		all := uint64(len(s.got)) >= s.sent
		since := time.Since(start)
		if s.lastGot.After(start) {
			since = time.Since(s.lastGot)
		}
		s.mu.Unlock()
		if all || since >= quiet {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lostRuns names the runs of consecutive sequence numbers in [from, to)
// that never came back, each with when its first was sent.
func (s *udpStream) lostRuns(from, to uint64, tl *timeline) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var runs []string
	for q := from; q < to; q++ {
		if s.got[q] {
			continue
		}
		first := q
		for q+1 < to && !s.got[q+1] {
			q++
		}
		runs = append(runs, fmt.Sprintf("%d-%d sent %s", first, q, tl.place(s.sentAt[first])))
	}
	return strings.Join(runs, "; ")
}

func (s *udpStream) sentSoFar() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}
