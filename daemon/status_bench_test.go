package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// BenchmarkStatusPollingCost measures what serving /status.json costs the
// data plane (issue 15: under 1 %): one TCP stream through the relay to a
// backend that discards, with and without a client reading /status.json
// every 100 ms, alternated in one run so that the machine's load hits both
// alike. It reports both throughputs and polled/plain.
//
//	go test -run '^$' -bench StatusPollingCost -benchtime 1x ./daemon
func BenchmarkStatusPollingCost(b *testing.B) {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() { sink.Close(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	port := freePort(b, "tcp")
	w := startWorld(b, adminOn(b)+fmt.Sprintf(`
listeners:
  - {name: bulk, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}
`, port, sink.Addr()), nil)
	addr, status := fmt.Sprintf("127.0.0.1:%d", port), "http://"+w.d.AdminAddr()+"/status.json"

	const size = 256 << 20
	buf := make([]byte, 256<<10)
	stream := func() float64 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		return float64(size) / time.Since(start).Seconds()
	}
	poll := func(stop <-chan struct{}, done chan<- int) {
		client := http.Client{Timeout: 5 * time.Second}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			case <-t.C:
				if resp, err := client.Get(status); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					n++
				}
			}
		}
	}

	var plain, polled float64
	reads := 0
	rounds := 0
	for range b.N {
		for range 3 {
			plain += stream()
			stop, done := make(chan struct{}), make(chan int, 1)
			go poll(stop, done)
			polled += stream()
			close(stop)
			reads += <-done
			rounds++
		}
	}
	b.ReportMetric(plain/float64(rounds)/(1<<20), "MiB/s-plain")
	b.ReportMetric(polled/float64(rounds)/(1<<20), "MiB/s-polled")
	b.ReportMetric(polled/plain, "polled/plain")
	b.ReportMetric(float64(reads)/float64(rounds), "reads/stream")
}
