package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jlaffaye/ftp"
)

const (
	smallFiles    = 64
	smallFileSize = 16 << 10
)

// ftpScenario downloads through the FTP mode: one large file (data-path
// throughput) and many small ones (the cost of a passive data port per
// transfer), with PASV and with EPSV.
type ftpScenario struct {
	size   int // bytes of the large file
	server *ftpServer
	sums   map[string][32]byte // path -> SHA-256
}

func (*ftpScenario) name() string { return "ftp" }

func (f *ftpScenario) metrics() []metric {
	big := formatValue(float64(f.size>>20), 0) + " MiB download"
	return []metric{
		{key: "dl-pasv", label: big + ", PASV", unit: "Gbit/s", higher: true, digits: 2},
		{key: "dl-epsv", label: big + ", EPSV", unit: "Gbit/s", higher: true, digits: 2},
		{key: "small-pasv", label: "16 KiB files, PASV", unit: "transfers/s", higher: true, digits: 0},
		{key: "small-epsv", label: "16 KiB files, EPSV", unit: "transfers/s", higher: true, digits: 0},
	}
}

func (f *ftpScenario) setup(e *env) ([]route, error) {
	f.size = e.scale.ftpFileSize
	files := map[string][]byte{"/big.bin": randomBytes(f.size, 4)}
	for i := range smallFiles {
		files[smallPath(i)] = randomBytes(smallFileSize, uint64(100+i))
	}
	f.sums = map[string][32]byte{}
	for p, b := range files {
		f.sums[p] = sha256.Sum256(b)
	}
	var err error
	if f.server, err = listenFTP(files); err != nil {
		return nil, err
	}
	return []route{{name: "ftp", mode: "ftp", upstream: f.server.addr()}}, nil
}

func smallPath(i int) string { return "/small/" + strconv.Itoa(i) }

func (f *ftpScenario) teardown()        { f.server.close() }
func (*ftpScenario) skip(string) string { return "" }
func (*ftpScenario) fresh() bool        { return false }

func (f *ftpScenario) measure(e *env, in *instance) (map[string]float64, error) {
	out := map[string]float64{}
	for _, mode := range []string{"pasv", "epsv"} {
		s, err := f.dial(in, mode == "epsv")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		gbps, err := s.download("/big.bin", f.sums["/big.bin"])
		if err == nil {
			out["small-"+mode], err = f.smallLoop(s, e.scale.window)
		}
		if err == nil {
			err = s.check()
		}
		s.quit()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		out["dl-"+mode] = gbps
	}
	return out, nil
}

// smallLoop downloads small files one after another for window and
// returns transfers per second.
func (f *ftpScenario) smallLoop(s *ftpClient, window time.Duration) (float64, error) {
	start := time.Now()
	n := 0
	// Bounded by time and, should the clock misbehave, by count.
	for ; n < 100_000 && time.Since(start) < window; n++ {
		p := smallPath(n % smallFiles)
		if _, err := s.download(p, f.sums[p]); err != nil {
			return 0, fmt.Errorf("transfer %d: %w", n, err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// ftpClient is one logged-in control connection, with a record of the
// addresses it dialled and of the control conversation, to prove that the
// data went where the forwarder's reply said.
type ftpClient struct {
	conn     *ftp.ServerConn
	epsv     bool
	dataPort [2]int // the relay's data ports; zero: any port will do
	log      syncBuffer
	buf      []byte // read buffer, reused by every download

	mu     sync.Mutex // guards the following
	dialed []string
}

func (f *ftpScenario) dial(in *instance, epsv bool) (*ftpClient, error) {
	s := &ftpClient{epsv: epsv, dataPort: in.ftpData, buf: make([]byte, 256<<10)}
	dial := func(network, addr string) (net.Conn, error) {
		s.mu.Lock()
		s.dialed = append(s.dialed, addr)
		s.mu.Unlock()
		return net.DialTimeout(network, addr, 5*time.Second)
	}
	c, err := ftp.Dial(in.addr("ftp"), ftp.DialWithTimeout(30*time.Second),
		ftp.DialWithDisabledEPSV(!epsv), ftp.DialWithDialFunc(dial), ftp.DialWithDebugOutput(&s.log))
	if err != nil {
		return nil, err
	}
	s.conn = c
	if err := c.Login("bench", "bench"); err != nil {
		c.Quit()
		return nil, fmt.Errorf("login: %w", err)
	}
	return s, nil
}

// download fetches path, checks its SHA-256, and returns Gbit/s.
func (s *ftpClient) download(path string, want [32]byte) (float64, error) {
	start := time.Now()
	r, err := s.conn.Retr(path)
	if err != nil {
		return 0, fmt.Errorf("RETR %s: %w", path, err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, s.buf)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	elapsed := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("RETR %s after %d bytes: %w", path, n, err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return 0, integrityf("RETR %s: %d bytes arrived, SHA-256 differs", path, n)
	}
	return float64(n) * 8 / elapsed.Seconds() / 1e9, nil
}

// check verifies that the passive mode asked for was used and that every
// data connection went to a port in the relay's data range.
func (s *ftpClient) check() error {
	talk := s.log.String()
	want := "227 "
	if s.epsv {
		want = "229 "
	}
	if !strings.Contains(talk, want) {
		return integrityf("no %q reply on the control connection", strings.TrimSpace(want))
	}
	if s.dataPort[0] == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, addr := range s.dialed[1:] { // the first is the control connection
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if port < s.dataPort[0] || port > s.dataPort[1] {
			return integrityf("data connection to %s, outside the relay's data ports %d-%d",
				addr, s.dataPort[0], s.dataPort[1])
		}
	}
	return nil
}

func (s *ftpClient) quit() { _ = s.conn.Quit() }

// syncBuffer is a bytes.Buffer safe for the FTP client's debug writer.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
